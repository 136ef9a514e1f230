#include "clrk/egress/config/snapshot.h"

#include <gtest/gtest.h>

TEST(SnapshotTest, Placeholder) {}
