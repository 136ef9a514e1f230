
Å


service.name
clrk-egress¡

clrk.egress0.1.0ˆ	Í…=þœ—ERROR*
CONNECT example.com:4432 
clrk.status_message	
refused2

clrk.layer
l4J	
RYÍ…=þœ—