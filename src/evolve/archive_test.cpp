// MAP-Elites archive: binning, insertion rules on hand-built cases, listing order, JSON round trip
// and corrupt files.
#include "shoal/archive.h"

#include <cmath>
#include <fstream>

#include <gtest/gtest.h>

#include "core/test_support.h"
#include "shoal/error.h"

namespace shoal {
namespace {

using nlohmann::json;

// Two tasks, scores in [0, 1], 4 bins each: bins are [0, .25), [.25, .5), [.5, .75), [.75, 1].
MapElitesArchive two_tasks() {
  return MapElitesArchive({{"math", 0.0, 1.0, 4}, {"lang", 0.0, 1.0, 4}});
}

TEST(MapElites, BinsDescriptorsIncludingEdgesAndOutOfRange) {
  const MapElitesArchive a = two_tasks();
  EXPECT_EQ(a.n_cells(), 16u);
  EXPECT_EQ(a.cell_of({0.0, 0.2499}), (std::vector<int>{0, 0}));
  EXPECT_EQ(a.cell_of({0.25, 0.5}), (std::vector<int>{1, 2}));
  EXPECT_EQ(a.cell_of({0.74, 1.0}), (std::vector<int>{2, 3}));  // upper is in the last bin
  EXPECT_EQ(a.cell_of({-3.0, 7.0}), (std::vector<int>{0, 3}));  // clamped
  EXPECT_THROW(a.cell_of({0.5}), ConfigError);
  EXPECT_THROW(a.cell_of({0.5, NAN}), ConfigError);
}

TEST(MapElites, InsertionRules) {
  MapElitesArchive a = two_tasks();
  // Empty cell: kept whatever its fitness.
  EXPECT_EQ(a.insert({1.0}, -0.3, {0.1, 0.9}), Insertion::kNewCell);
  // Same cell (0, 3), worse (higher) fitness: rejected; equal: the incumbent stays.
  EXPECT_EQ(a.insert({2.0}, -0.2, {0.2, 0.8}), Insertion::kRejected);
  EXPECT_EQ(a.insert({3.0}, -0.3, {0.0, 1.0}), Insertion::kRejected);
  EXPECT_EQ(a.at({0, 3})->genome, std::vector<double>{1.0});
  // Strictly better: replaces, with its own descriptors and info.
  EXPECT_EQ(a.insert({4.0}, -0.5, {0.24, 0.76}, json{{"eval", 7}}), Insertion::kImproved);
  const Elite* e = a.at({0, 3});
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->genome, std::vector<double>{4.0});
  EXPECT_EQ(e->descriptors, (std::vector<double>{0.24, 0.76}));
  EXPECT_EQ(e->info["eval"], 7);
  // Another cell is independent, even with a worse fitness.
  EXPECT_EQ(a.insert({5.0}, 10.0, {0.9, 0.1}), Insertion::kNewCell);
  // A failed candidate never enters, not even an empty cell; NaN is an error.
  EXPECT_EQ(a.insert({6.0}, INFINITY, {0.5, 0.5}), Insertion::kRejected);
  EXPECT_EQ(a.at({2, 2}), nullptr);
  EXPECT_THROW(a.insert({7.0}, NAN, {0.5, 0.5}), ConfigError);
  EXPECT_EQ(a.size(), 2u);
  EXPECT_DOUBLE_EQ(a.coverage(), 2.0 / 16.0);
  EXPECT_EQ(a.at({9, 0}), nullptr);
}

TEST(MapElites, ElitesAreListedBestFirst) {
  MapElitesArchive a = two_tasks();
  a.insert({1}, 0.5, {0.9, 0.9});
  a.insert({2}, -1.0, {0.1, 0.1});
  a.insert({3}, 0.5, {0.1, 0.9});  // ties with {1}: cell (0, 3) = index 3 before (3, 3) = 15
  a.insert({4}, 0.0, {0.6, 0.1});
  std::vector<double> order;
  for (const auto& e : a.elites()) order.push_back(e.genome[0]);
  EXPECT_EQ(order, (std::vector<double>{2, 4, 3, 1}));
}

TEST(MapElites, SaveAndLoadKeepEverythingExactly) {
  test::TempDir dir;
  MapElitesArchive a({{"math", -1.0, 2.0, 3}, {"lang", 0.0, 1.0, 5}, {"code", 0.0, 0.5, 2}});
  a.insert({0.1, 1.0 / 3.0}, -0.123456789012345678, {0.5, 0.3, 0.1}, json{{"scores", {1, 2}}});
  a.insert({-0.0, 1e-300}, 2.5, {-5.0, 0.99, 0.4});
  const auto path = dir / "archive.json";
  a.save(path);
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
  const MapElitesArchive b = MapElitesArchive::load(path);
  EXPECT_EQ(b.to_json(), a.to_json());
  EXPECT_EQ(b.elites()[0].genome[1], 1.0 / 3.0);
  EXPECT_TRUE(std::signbit(b.elites()[1].genome[0]));
  EXPECT_EQ(b.axes()[2].upper, 0.5);
}

TEST(MapElites, CorruptArchivesAreFormatErrors) {
  MapElitesArchive a = two_tasks();
  a.insert({1}, 0.5, {0.9, 0.9});
  a.insert({2}, 0.1, {0.1, 0.1});
  const json good = a.to_json();
  EXPECT_NO_THROW(MapElitesArchive::from_json(good));
  auto broken = [&](const std::function<void(json&)>& change) {
    json j = good;
    change(j);
    EXPECT_THROW(MapElitesArchive::from_json(j), FormatError) << j.dump();
  };
  broken([](json& j) { j["format"] = "x"; });
  broken([](json& j) { j["extra"] = 1; });
  broken([](json& j) { j["axes"][0]["bins"] = 0; });
  broken([](json& j) { j["axes"][0].erase("lower"); });
  broken([](json& j) { j["elites"][0]["cell"] = json::array({0, 0}); });  // wrong cell
  broken([](json& j) { j["elites"][1] = j["elites"][0]; });               // same cell twice
  broken([](json& j) { j["elites"][0]["descriptors"] = json::array({0.1}); });
  broken([](json& j) { j["elites"][0]["fitness"] = "inf"; });
  broken([](json& j) { j["elites"][0]["genome"] = "abc"; });

  test::TempDir dir;
  EXPECT_THROW(MapElitesArchive::load(dir.write("bad.json", "{not json")), FormatError);
  EXPECT_THROW(MapElitesArchive::load(dir / "missing.json"), IoError);
}

TEST(MapElites, InvalidAxesAreConfigErrors) {
  EXPECT_THROW(MapElitesArchive({}), ConfigError);
  EXPECT_THROW(MapElitesArchive({{"", 0, 1, 2}}), ConfigError);
  EXPECT_THROW(MapElitesArchive({{"a", 1, 1, 2}}), ConfigError);
  EXPECT_THROW(MapElitesArchive({{"a", 0, 1, 0}}), ConfigError);
  EXPECT_THROW(MapElitesArchive({{"a", 0, 1, 5000}, {"b", 0, 1, 5000}}), ConfigError);
}

}  // namespace
}  // namespace shoal
