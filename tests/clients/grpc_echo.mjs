// gRPC through the egress with @grpc/grpc-js on both ends (HTTP/2, status in trailers).
// ROLE=server: a TLS gRPC server (KEY_FILE, CERT_FILE) on 127.0.0.1; prints {"port":N} and serves
//   until stdin closes. Service clrk.test.Echo, raw bytes in and out:
//   Say (unary)        -> the request back, trailing metadata x-echo-trailer: <bytes>
//   Fail (unary)       -> status NOT_FOUND "no such thing"
//   Count (server stream, the request is a number N) -> N messages, then OK
//   CountThenFail      -> 2 messages, then status RESOURCE_EXHAUSTED "over budget"
//   Chat (bidirectional) -> "re: <m>" for every message m as it arrives; OK when the client ends
// ROLE=client: calls each through the proxy in grpc_proxy (CONNECT) to TARGET (host:port),
//   trusting CA_FILE only; prints {"ok":true,"say":..,"trailer":..,"fail":{code,details},
//   "count":N,"count_then_fail":{messages,code,details},"chat":{replies,code}}. Chat is a
//   ping-pong: each message is sent only after the reply to the previous one came back.
import grpc from '@grpc/grpc-js';
import fs from 'node:fs';
import { env, done, fail } from './common.mjs';

const raw = { serialize: (b) => b, deserialize: (b) => b };
const service = {
  say: { path: '/clrk.test.Echo/Say', requestStream: false, responseStream: false,
         requestSerialize: raw.serialize, requestDeserialize: raw.deserialize,
         responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  fail: { path: '/clrk.test.Echo/Fail', requestStream: false, responseStream: false,
          requestSerialize: raw.serialize, requestDeserialize: raw.deserialize,
          responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  count: { path: '/clrk.test.Echo/Count', requestStream: false, responseStream: true,
           requestSerialize: raw.serialize, requestDeserialize: raw.deserialize,
           responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  countThenFail: { path: '/clrk.test.Echo/CountThenFail', requestStream: false,
                   responseStream: true,
                   requestSerialize: raw.serialize, requestDeserialize: raw.deserialize,
                   responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  chat: { path: '/clrk.test.Echo/Chat', requestStream: true, responseStream: true,
          requestSerialize: raw.serialize, requestDeserialize: raw.deserialize,
          responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
};

if (env('ROLE') === 'server') {
  const server = new grpc.Server();
  server.addService(service, {
    say: (call, callback) => {
      const trailer = new grpc.Metadata();
      trailer.set('x-echo-trailer', String(call.request.length));
      callback(null, call.request, trailer);
    },
    fail: (call, callback) => {
      callback({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
    },
    count: (call) => {
      const n = Number(call.request.toString());
      for (let i = 1; i <= n; ++i) call.write(Buffer.from(`message ${i}`));
      call.end();
    },
    countThenFail: (call) => {
      call.write(Buffer.from('one'));
      call.write(Buffer.from('two'));
      call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'over budget' });
    },
    chat: (call) => {
      call.on('data', (m) => call.write(Buffer.from(`re: ${m.toString()}`)));
      call.on('end', () => call.end());
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(null, [{
    private_key: fs.readFileSync(env('KEY_FILE')), cert_chain: fs.readFileSync(env('CERT_FILE')),
  }]);
  server.bindAsync('127.0.0.1:0', credentials, (error, port) => {
    if (error) fail(error);
    process.stdout.write(JSON.stringify({ port }) + '\n');
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
} else {
  const Client = grpc.makeGenericClientConstructor(service, 'Echo');
  const client = new Client(env('TARGET'),
                            grpc.credentials.createSsl(fs.readFileSync(env('CA_FILE'))));
  const deadline = () => new Date(Date.now() + Number(env('TIMEOUT_MS', '10000')));
  // The callback runs before the 'status' event (which carries the trailing metadata).
  const unary = (method, request) => new Promise((resolve) => {
    let result = null;
    const call = client[method](request, new grpc.Metadata(), { deadline: deadline() },
                                (error, reply) => { result = { error, reply }; });
    call.on('status', (status) => {
      const trailer = status.metadata.get('x-echo-trailer')[0] ?? null;
      setImmediate(() => resolve({ ...result, trailer }));
    });
  });
  const stream = (method, request) => new Promise((resolve) => {
    const messages = [];
    const call = client[method](request, new grpc.Metadata(), { deadline: deadline() });
    call.on('data', (m) => messages.push(m.toString()));
    call.on('error', () => {});
    call.on('status', (status) => resolve({ messages, code: status.code,
                                            details: status.details }));
  });
  const chat = (rounds) => new Promise((resolve) => {
    const replies = [];
    const call = client.chat(new grpc.Metadata(), { deadline: deadline() });
    call.on('data', (m) => {
      replies.push(m.toString());
      if (replies.length < rounds) call.write(Buffer.from(`ping ${replies.length + 1}`));
      else call.end();
    });
    call.on('error', () => {});
    call.on('status', (status) => resolve({ replies, code: status.code,
                                            details: status.details }));
    call.write(Buffer.from('ping 1'));
  });
  try {
    const say = await unary('say', Buffer.from('hello over grpc'));
    if (say.error) throw say.error;
    const failed = await unary('fail', Buffer.from('x'));
    const counted = await stream('count', Buffer.from('5'));
    const cut = await stream('countThenFail', Buffer.from(''));
    const chatted = await chat(3);
    done({
      say: say.reply.toString(),
      trailer: say.trailer,
      fail: { code: failed.error ? failed.error.code : 0,
              details: failed.error ? failed.error.details : '' },
      count: counted.messages.length, count_code: counted.code,
      count_then_fail: { messages: cut.messages.length, code: cut.code, details: cut.details },
      chat: chatted,
    });
  } catch (error) {
    fail(error);
  }
  client.close();
}
