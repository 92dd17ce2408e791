#include <diffstride/train_config.h>

#include <c10/util/Exception.h>

#include <toml++/toml.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace diffstride {

namespace {

// Every key a config may hold, by section.
const std::map<std::string, std::set<std::string>>& known_keys() {
  static const std::map<std::string, std::set<std::string>> keys = {
      {"data", {"dataset", "data_dir", "batch_size", "mixup_alpha", "augment"}},
      {"model",
       {"factory",
        "strides",
        "filters",
        "layers_per_block",
        "id_only",
        "pooling",
        "smoothness_factor",
        "cropping",
        "shared_stride",
        "trainable_strides",
        "lower_limit_stride",
        "upper_limit_stride"}},
      {"optimizer", {"momentum", "boundaries", "values"}},
      {"loss", {"label_smoothing", "weight_decay", "complexity_lambda"}},
      {"train", {"epochs", "seed", "threads", "out"}}};
  return keys;
}

std::string join(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names)
    out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Typed access to one parsed config, with errors that name the key.
class Reader {
 public:
  Reader(const toml::table& root, std::string origin)
      : root_(root), origin_(std::move(origin)) {}

  const toml::node* find(const std::string& section,
                         const std::string& key) const {
    const auto* table = root_.get_as<toml::table>(section);
    return table == nullptr ? nullptr : table->get(key);
  }

  [[noreturn]] void fail(const std::string& key,
                         const std::string& what) const {
    TORCH_CHECK(false, origin_, ": ", key, ": ", what);
  }

  void read(const std::string& section,
            const std::string& key,
            std::string& out) const {
    if (const auto* node = find(section, key)) {
      if (!node->is_string())
        fail(section + "." + key, "expected a string");
      out = **node->as_string();
    }
  }
  void read(const std::string& section,
            const std::string& key,
            bool& out) const {
    if (const auto* node = find(section, key)) {
      if (!node->is_boolean())
        fail(section + "." + key, "expected true or false");
      out = **node->as_boolean();
    }
  }
  void read(const std::string& section,
            const std::string& key,
            int64_t& out) const {
    if (const auto* node = find(section, key)) {
      if (!node->is_integer())
        fail(section + "." + key, "expected an integer");
      out = **node->as_integer();
    }
  }
  void read(const std::string& section,
            const std::string& key,
            double& out) const {
    if (const auto* node = find(section, key)) {
      if (!node->is_number())
        fail(section + "." + key, "expected a number");
      out = node->value<double>().value();
      if (!std::isfinite(out))
        fail(section + "." + key, "expected a finite number");
    }
  }
  template <typename T>
  void read(const std::string& section,
            const std::string& key,
            std::vector<T>& out) const {
    const auto* node = find(section, key);
    if (node == nullptr)
      return;
    const auto* array = node->as_array();
    if (array == nullptr)
      fail(section + "." + key, "expected an array");
    out.clear();
    for (const auto& item : *array) {
      if constexpr (std::is_same_v<T, int64_t>) {
        if (!item.is_integer())
          fail(section + "." + key, "expected an array of integers");
        out.push_back(**item.as_integer());
      } else {
        if (!item.is_number())
          fail(section + "." + key, "expected an array of numbers");
        out.push_back(item.value<double>().value());
      }
    }
  }
  // Strides: an array of numbers or [h, w] pairs, or a string "1,1,2x3".
  void read_strides(const std::string& section,
                    const std::string& key,
                    std::vector<StridePair>& out) const {
    const auto* node = find(section, key);
    if (node == nullptr)
      return;
    const std::string name = section + "." + key;
    const std::string expected =
        "expected strides >= 1 per stage: an array of numbers or [height, "
        "width] pairs, or a string such as \"1,1,2x3,2\"";
    out.clear();
    const auto check = [&](double h, double w) {
      if (!(h >= 1 && w >= 1 && std::isfinite(h) && std::isfinite(w)))
        fail(name, expected);
      out.push_back(StridePair({h, w}));
    };
    if (const auto* text = node->as_string()) {
      std::istringstream items(**text);
      std::string item;
      while (std::getline(items, item, ',')) {
        std::istringstream one(item);
        double h = 0, w = 0;
        char x = 0;
        if (!(one >> h))
          fail(name, expected);
        w = h;
        if (!one.eof() && !(one >> x >> w && x == 'x'))
          fail(name, expected);
        if (!one.eof())
          fail(name, expected);
        check(h, w);
      }
    } else if (const auto* array = node->as_array()) {
      for (const auto& item : *array) {
        if (item.is_number()) {
          const double s = item.value<double>().value();
          check(s, s);
        } else if (const auto* pair = item.as_array();
                   pair != nullptr && pair->size() == 2 &&
                   (*pair)[0].is_number() && (*pair)[1].is_number()) {
          check((*pair)[0].value<double>().value(),
                (*pair)[1].value<double>().value());
        } else {
          fail(name, expected);
        }
      }
    } else {
      fail(name, expected);
    }
    if (out.empty())
      fail(name, expected);
  }

 private:
  const toml::table& root_;
  std::string origin_;
};

toml::table parse_toml(const std::string& text, const std::string& origin) {
  try {
    return toml::parse(text, origin);
  } catch (const toml::parse_error& error) {
    std::ostringstream message;
    message << origin << ": line " << error.source().begin.line << ": "
            << error.description();
    TORCH_CHECK(false, message.str());
  }
}

void apply_override(toml::table& root, const std::string& item) {
  const auto eq = item.find('=');
  const auto dot = item.find('.');
  TORCH_CHECK(eq != std::string::npos && dot != std::string::npos && dot < eq,
              "--set ",
              item,
              ": expected section.key=value, e.g. model.pooling=spectral");
  const std::string section = item.substr(0, dot);
  const std::string key = item.substr(dot + 1, eq - dot - 1);
  const std::string value = item.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    parsed.insert_or_assign("v", value);  // a bare string
  }
  if (!root.contains(section)) {
    root.insert_or_assign(section, toml::table{});
  }
  auto* table = root.get_as<toml::table>(section);
  TORCH_CHECK(
      table != nullptr, "--set ", item, ": ", section, " is not a section");
  table->insert_or_assign(key, *parsed.get("v"));
}

}  // namespace

std::string default_train_config_toml() {
  return R"(# A small DiffStride ResNet on Fashion-MNIST (Debian's dataset-fashion-mnist):
# the default run of `diffstride train`, a few minutes on 2 cores.
[data]
dataset = "fashion_mnist"
batch_size = 128
mixup_alpha = 0.0
augment = false

[model]
factory = "resnet"
filters = [16, 32, 64]
strides = [1, 2, 2]
layers_per_block = 1
id_only = []
pooling = "diffstride"
smoothness_factor = 4.0

[optimizer]
momentum = 0.9
boundaries = [100, 1200, 1700]
values = [0.01, 0.05, 0.01, 0.002]

[loss]
label_smoothing = 0.1
weight_decay = 5e-4
complexity_lambda = 0.0

[train]
epochs = 4
seed = 0
threads = 0
out = "runs/fashion_mnist"
)";
}

TrainConfig parse_train_config(const std::string& toml_text,
                               const std::vector<std::string>& overrides,
                               const std::string& origin) {
  auto root = parse_toml(toml_text, origin);
  for (const auto& item : overrides) {
    apply_override(root, item);
  }
  for (const auto& [section, node] : root) {
    const std::string name(section.str());
    const auto known = known_keys().find(name);
    TORCH_CHECK(known != known_keys().end(),
                origin,
                ": unknown section [",
                name,
                "]; known sections: data, loss, model, optimizer, train");
    const auto* table = node.as_table();
    TORCH_CHECK(table != nullptr, origin, ": ", name, " must be a section");
    for (const auto& [key, value] : *table) {
      TORCH_CHECK(known->second.count(std::string(key.str())) == 1,
                  origin,
                  ": unknown key '",
                  name,
                  ".",
                  key.str(),
                  "'; known keys of [",
                  name,
                  "]: ",
                  join(known->second));
    }
  }
  const Reader r(root, origin);
  TrainConfig c;
  r.read("data", "dataset", c.data.dataset);
  r.read("data", "data_dir", c.data.data_dir);
  r.read("data", "batch_size", c.data.batch_size);
  r.read("data", "mixup_alpha", c.data.mixup_alpha);
  r.read("data", "augment", c.data.augment);
  r.read("model", "factory", c.model.factory);
  r.read_strides("model", "strides", c.model.strides);
  r.read("model", "filters", c.model.filters);
  r.read("model", "layers_per_block", c.model.layers_per_block);
  r.read("model", "id_only", c.model.id_only);
  r.read("model", "pooling", c.model.pooling);
  r.read("model", "smoothness_factor", c.model.smoothness_factor);
  r.read("model", "cropping", c.model.cropping);
  r.read("model", "shared_stride", c.model.shared_stride);
  r.read("model", "trainable_strides", c.model.trainable_strides);
  r.read("model", "lower_limit_stride", c.model.lower_limit_stride);
  if (r.find("model", "upper_limit_stride") != nullptr) {
    double upper = 0;
    r.read("model", "upper_limit_stride", upper);
    c.model.upper_limit_stride = upper;
  }
  r.read("optimizer", "momentum", c.optimizer.momentum);
  r.read("optimizer", "boundaries", c.optimizer.boundaries);
  r.read("optimizer", "values", c.optimizer.values);
  r.read("loss", "label_smoothing", c.loss.label_smoothing);
  r.read("loss", "weight_decay", c.loss.weight_decay);
  r.read("loss", "complexity_lambda", c.loss.complexity_lambda);
  r.read("train", "epochs", c.train.epochs);
  int64_t seed = 0;
  r.read("train", "seed", seed);
  if (seed < 0)
    r.fail("train.seed", "expected an integer >= 0");
  c.train.seed = static_cast<uint64_t>(seed);
  r.read("train", "threads", c.train.threads);
  r.read("train", "out", c.train.out);

  // Values.
  const auto one_of = [&](const std::string& key,
                          const std::string& value,
                          const std::set<std::string>& allowed) {
    if (allowed.count(value) == 0) {
      r.fail(key, "'" + value + "' is not one of " + join(allowed));
    }
  };
  one_of(
      "data.dataset", c.data.dataset, {"cifar10", "cifar100", "fashion_mnist"});
  one_of("model.factory", c.model.factory, {"resnet18", "resnet56", "resnet"});
  one_of("model.pooling",
         c.model.pooling,
         {"none", "spatial", "spectral", "diffstride"});
  if (c.data.batch_size < 1)
    r.fail("data.batch_size", "expected an integer >= 1");
  if (c.data.mixup_alpha < 0)
    r.fail("data.mixup_alpha", "expected a number >= 0");
  if (c.model.factory == "resnet" &&
      (c.model.filters.empty() || c.model.strides.empty())) {
    r.fail("model.factory", "\"resnet\" needs model.filters and model.strides");
  }
  if (c.model.smoothness_factor <= 0)
    r.fail("model.smoothness_factor", "expected a number > 0");
  if (c.model.layers_per_block < 0)
    r.fail("model.layers_per_block", "expected an integer >= 0");
  if (c.optimizer.values.size() != c.optimizer.boundaries.size() + 1) {
    r.fail("optimizer.values",
           "expected one more value than optimizer.boundaries (" +
               std::to_string(c.optimizer.boundaries.size()) + " boundaries, " +
               std::to_string(c.optimizer.values.size()) + " values)");
  }
  for (size_t i = 1; i < c.optimizer.boundaries.size(); ++i) {
    if (c.optimizer.boundaries[i] <= c.optimizer.boundaries[i - 1]) {
      r.fail("optimizer.boundaries", "expected increasing steps");
    }
  }
  for (const double v : c.optimizer.values) {
    if (!(v > 0))
      r.fail("optimizer.values", "expected learning rates > 0");
  }
  if (c.loss.label_smoothing < 0 || c.loss.label_smoothing >= 1) {
    r.fail("loss.label_smoothing", "expected a number in [0, 1)");
  }
  if (c.loss.weight_decay < 0)
    r.fail("loss.weight_decay", "expected a number >= 0");
  if (c.loss.complexity_lambda < 0)
    r.fail("loss.complexity_lambda", "expected a number >= 0");
  if (c.train.epochs < 1)
    r.fail("train.epochs", "expected an integer >= 1");
  if (c.train.threads < 0)
    r.fail("train.threads", "expected an integer >= 0 (0: all cores)");
  if (c.train.out.empty())
    r.fail("train.out", "expected a folder");
  return c;
}

TrainConfig load_train_config(const std::string& path,
                              const std::vector<std::string>& overrides) {
  if (path.empty()) {
    return parse_train_config(
        default_train_config_toml(), overrides, "default config");
  }
  std::ifstream in(path);
  TORCH_CHECK(in.good(), path, ": config file not found or unreadable");
  std::stringstream text;
  text << in.rdbuf();
  return parse_train_config(text.str(), overrides, path);
}

std::string to_toml(const TrainConfig& c) {
  const auto numbers = [](const auto& values) {
    toml::array array;
    for (const auto v : values)
      array.push_back(v);
    return array;
  };
  toml::array strides;
  for (const auto& s : c.model.strides) {
    strides.push_back(toml::array{(*s)[0], (*s)[1]});
  }
  toml::table model{{"factory", c.model.factory},
                    {"strides", strides},
                    {"filters", numbers(c.model.filters)},
                    {"layers_per_block", c.model.layers_per_block},
                    {"id_only", numbers(c.model.id_only)},
                    {"pooling", c.model.pooling},
                    {"smoothness_factor", c.model.smoothness_factor},
                    {"cropping", c.model.cropping},
                    {"shared_stride", c.model.shared_stride},
                    {"trainable_strides", c.model.trainable_strides},
                    {"lower_limit_stride", c.model.lower_limit_stride}};
  if (c.model.upper_limit_stride) {
    model.insert("upper_limit_stride", *c.model.upper_limit_stride);
  }
  const toml::table root{
      {"data",
       toml::table{{"dataset", c.data.dataset},
                   {"data_dir", c.data.data_dir},
                   {"batch_size", c.data.batch_size},
                   {"mixup_alpha", c.data.mixup_alpha},
                   {"augment", c.data.augment}}},
      {"model", model},
      {"optimizer",
       toml::table{{"momentum", c.optimizer.momentum},
                   {"boundaries", numbers(c.optimizer.boundaries)},
                   {"values", numbers(c.optimizer.values)}}},
      {"loss",
       toml::table{{"label_smoothing", c.loss.label_smoothing},
                   {"weight_decay", c.loss.weight_decay},
                   {"complexity_lambda", c.loss.complexity_lambda}}},
      {"train",
       toml::table{{"epochs", c.train.epochs},
                   {"seed", static_cast<int64_t>(c.train.seed)},
                   {"threads", c.train.threads},
                   {"out", c.train.out}}}};
  std::ostringstream out;
  out << root << "\n";
  return out.str();
}

double learning_rate_at(const TrainConfig::Optimizer& optimizer, int64_t step) {
  size_t i = 0;
  while (i < optimizer.boundaries.size() && step >= optimizer.boundaries[i]) {
    ++i;
  }
  return optimizer.values[i];
}

}  // namespace diffstride
