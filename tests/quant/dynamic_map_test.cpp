// create_dynamic_map against the PyTorch reference and values published from real bitsandbytes.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"
#include "quant/dynamic_map.h"
#include "quant_ref.h"

namespace bidora::quant {
namespace {

TEST(DynamicMap, SignedAndUnsignedMatchReferenceBitwise) {
  const auto& ref = test::quant_ref("maps.safetensors");
  EXPECT_TRUE(test::bits_equal(dynamic_map_signed(), ref.get("signed").f32()));
  EXPECT_TRUE(test::bits_equal(dynamic_map_unsigned(), ref.get("unsigned").f32()));
}

TEST(DynamicMap, OtherParametersMatchReference) {
  const auto& ref = test::quant_ref("maps.safetensors");
  EXPECT_TRUE(test::bits_equal(create_dynamic_map(true, 4, 8), ref.get("signed_e4_b8").f32()));
  EXPECT_TRUE(test::bits_equal(create_dynamic_map(false, 3, 4), ref.get("unsigned_e3_b4").f32()));
  EXPECT_TRUE(test::bits_equal(create_dynamic_map(true, 3, 4), ref.get("signed_e3_b4").f32()));
  EXPECT_TRUE(test::bits_equal(create_dynamic_map(true, 2, 5), ref.get("signed_e2_b5").f32()));
}

TEST(DynamicMap, PublishedBitsandbytesValues) {
  // Entries of the map as bitsandbytes produces it (printed from real runs); index 1 and 18 differ
  // between PyTorch's old vectorised linspace and the FMA form we reproduce.
  const Code256& m = dynamic_map_signed();
  EXPECT_EQ(m[0], -0.992968738079071f);
  EXPECT_EQ(m[1], -0.9789062738418579f);
  EXPECT_EQ(m[18], -0.7398437261581421f);
  EXPECT_EQ(m[64], -0.09859374910593033f);
  EXPECT_EQ(m[126], -5.500000384017767e-07f);
  EXPECT_EQ(m[127], 0.0f);
  EXPECT_EQ(m[128], 5.500000384017767e-07f);
  EXPECT_EQ(m[254], 0.992968738079071f);
  EXPECT_EQ(m[255], 1.0f);
}

TEST(DynamicMap, Structure) {
  const Code256& s = dynamic_map_signed();
  EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
  EXPECT_EQ(std::count_if(s.begin(), s.end(), [](float v) { return v < 0; }), 127);
  for (int i = 0; i < 127; ++i) EXPECT_EQ(s[i], -s[254 - i]) << i;  // symmetric except the final 1.0
  const Code256& u = dynamic_map_unsigned();
  EXPECT_TRUE(std::is_sorted(u.begin(), u.end()));
  EXPECT_EQ(u[0], 0.0f);
  EXPECT_EQ(u[255], 1.0f);
  EXPECT_GT(u[1], 0.0f);
  // fewer than 8 bits: the unused entries are zeros, sorted in among the values
  const Code256 four = create_dynamic_map(true, 3, 4);
  EXPECT_EQ(std::count(four.begin(), four.end(), 0.0f), 256 - 16 + 1);
}

TEST(DynamicMap, RejectsCombinationsBitsandbytesRejects) {
  EXPECT_THROW(create_dynamic_map(false, 5, 8), Error);  // 253 values, not 256
  EXPECT_THROW(create_dynamic_map(true, 8, 8), Error);
  EXPECT_THROW(create_dynamic_map(true, 3, 9), Error);
}

}  // namespace
}  // namespace bidora::quant
