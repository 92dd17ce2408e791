// The config schema: one row per key (section, key, member, check, help),
// and the reading, key validation, overrides, writing and reference table
// that are all derived from it.

#include <diffstride/train/config.h>

#include <diffstride/data/dataset.h>
#include <diffstride/models/pooling_choice.h>
#include <diffstride/models/resnet.h>
#include <diffstride/train/mixed_precision.h>

#include <c10/core/Device.h>
#include <c10/util/Exception.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <thread>

namespace diffstride {

namespace {

// An error message; empty when there is none.
using Error = std::string;

std::string join(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names)
    out += (out.empty() ? "" : ", ") + n;
  return out;
}

// ---------------------------------------------------------------------------
// Value types: how each is read from a TOML node, written back, and named.

template <typename T>
struct Codec;

template <>
struct Codec<std::string> {
  static constexpr const char* kType = "string";
  static constexpr const char* kExpected = "expected a string";
  static std::optional<std::string> read(const toml::node& node) {
    if (const auto* s = node.as_string())
      return s->get();
    return std::nullopt;
  }
  static std::string write(const std::string& v) {
    return v;
  }
};

template <>
struct Codec<bool> {
  static constexpr const char* kType = "boolean";
  static constexpr const char* kExpected = "expected true or false";
  static std::optional<bool> read(const toml::node& node) {
    if (const auto* b = node.as_boolean())
      return b->get();
    return std::nullopt;
  }
  static bool write(bool v) {
    return v;
  }
};

template <>
struct Codec<int64_t> {
  static constexpr const char* kType = "integer";
  static constexpr const char* kExpected = "expected an integer";
  static std::optional<int64_t> read(const toml::node& node) {
    if (const auto* i = node.as_integer())
      return i->get();
    return std::nullopt;
  }
  static int64_t write(int64_t v) {
    return v;
  }
};

template <>
struct Codec<uint64_t> {
  static constexpr const char* kType = "integer";
  static constexpr const char* kExpected = "expected an integer >= 0";
  static std::optional<uint64_t> read(const toml::node& node) {
    if (const auto* i = node.as_integer(); i != nullptr && i->get() >= 0)
      return static_cast<uint64_t>(i->get());
    return std::nullopt;
  }
  static int64_t write(uint64_t v) {
    return static_cast<int64_t>(v);
  }
};

template <>
struct Codec<double> {
  static constexpr const char* kType = "number";
  static constexpr const char* kExpected = "expected a finite number";
  static std::optional<double> read(const toml::node& node) {
    if (!node.is_number())
      return std::nullopt;
    const double v = node.value<double>().value();
    if (!std::isfinite(v))
      return std::nullopt;
    return v;
  }
  static double write(double v) {
    return v;
  }
};

// A stride per stage: a number, an [h, w] pair, or a string "h" or "hxw".
template <>
struct Codec<StridePair> {
  static constexpr const char* kType = "stride";
  static constexpr const char* kExpected =
      "expected strides >= 1 per stage: an array of numbers or [height, "
      "width] pairs, or a string such as \"1,1,2x3,2\"";
  static std::optional<StridePair> read(const toml::node& node) {
    if (node.is_number()) {
      const double s = node.value<double>().value();
      return StridePair({s, s});
    }
    if (const auto* pair = node.as_array()) {
      if (pair->size() == 2 && (*pair)[0].is_number() &&
          (*pair)[1].is_number()) {
        return StridePair({(*pair)[0].value<double>().value(),
                           (*pair)[1].value<double>().value()});
      }
      return std::nullopt;
    }
    if (const auto* text = node.as_string()) {
      std::istringstream one(text->get());
      double h = 0, w = 0;
      char x = 0;
      if (!(one >> h))
        return std::nullopt;
      w = h;
      if (!one.eof() && !(one >> x >> w && x == 'x'))
        return std::nullopt;
      if (!one.eof())
        return std::nullopt;
      return StridePair({h, w});
    }
    return std::nullopt;
  }
  static toml::array write(const StridePair& s) {
    return toml::array{(*s)[0], (*s)[1]};
  }
};

// A list: a TOML array, a single value, or a comma-separated string whose
// items are read as TOML values (bare words as strings). Every list key
// accepts all three, so `--set model.filters=8,8,8` works like
// `--set model.strides=1,1,2x3`.
template <typename E>
struct Codec<std::vector<E>> {
  static inline const std::string kType =
      std::string("list of ") + Codec<E>::kType + "s";
  static inline const std::string kExpected =
      std::is_same_v<E, StridePair>
          ? std::string(Codec<E>::kExpected)
          : "expected a list of " + std::string(Codec<E>::kType) +
                "s: an array, one value, or a comma-separated string such "
                "as 8,8,8";

  static std::optional<std::vector<E>> read(const toml::node& node) {
    std::vector<E> out;
    const auto add = [&](const toml::node& item) {
      const auto value = Codec<E>::read(item);
      if (value)
        out.push_back(*value);
      return value.has_value();
    };
    if (const auto* array = node.as_array()) {
      for (const auto& item : *array) {
        if (!add(item))
          return std::nullopt;
      }
    } else if (const auto* text = node.as_string()) {
      std::istringstream items(text->get());
      std::string item;
      while (std::getline(items, item, ',')) {
        const auto first = item.find_first_not_of(" \t");
        const auto last = item.find_last_not_of(" \t");
        item = first == std::string::npos
                   ? ""
                   : item.substr(first, last - first + 1);
        toml::table parsed;
        try {
          parsed = toml::parse("v = " + item);
        } catch (const toml::parse_error&) {
          parsed.insert_or_assign("v", item);
        }
        if (!add(*parsed.get("v")))
          return std::nullopt;
      }
    } else if (!add(node)) {
      return std::nullopt;
    }
    return out;
  }
  static toml::array write(const std::vector<E>& values) {
    toml::array array;
    for (const auto& v : values)
      array.push_back(Codec<E>::write(v));
    return array;
  }
};

// An optional value: absent (written as nothing) or a value.
template <typename T>
struct Codec<std::optional<T>> {
  static constexpr const char* kType = Codec<T>::kType;
  static constexpr const char* kExpected = Codec<T>::kExpected;
  static std::optional<std::optional<T>> read(const toml::node& node) {
    const auto v = Codec<T>::read(node);
    if (!v)
      return std::nullopt;
    return std::optional<T>(*v);
  }
};

template <typename T>
constexpr bool kIsOptional = false;
template <typename T>
constexpr bool kIsOptional<std::optional<T>> = true;

// ---------------------------------------------------------------------------
// Checks of a value, each with the message that says what is expected.

template <typename T>
using Check = std::function<Error(const T&)>;

template <typename T>
Check<T> any() {
  return [](const T&) { return Error(); };
}

Check<int64_t> integer_at_least(int64_t min, const std::string& note = "") {
  return [=](int64_t v) {
    return v >= min ? Error()
                    : "expected an integer >= " + std::to_string(min) + note;
  };
}

Check<int64_t> integer_in(int64_t min, int64_t max, const std::string& note) {
  return [=](int64_t v) {
    return v >= min && v <= max
               ? Error()
               : "expected an integer in [" + std::to_string(min) + ", " +
                     std::to_string(max) + "]" + note;
  };
}

// Threads: at most max_threads(), which depends on the machine.
Check<int64_t> thread_count(int64_t min, const std::string& note) {
  return [=](int64_t v) {
    return integer_in(min,
                      max_threads(),
                      " (at most " + std::to_string(kThreadsPerCore) +
                          " x this machine's " +
                          std::to_string(max_threads() / kThreadsPerCore) +
                          " cores" + note + ")")(v);
  };
}

// An optional integer: absent, or at least `min`.
Check<std::optional<int64_t>> absent_or_at_least(int64_t min,
                                                 const std::string& note) {
  return [=](const std::optional<int64_t>& v) {
    return !v || *v >= min
               ? Error()
               : "expected an integer >= " + std::to_string(min) + note;
  };
}

Check<std::vector<int64_t>> each_at_least(int64_t min) {
  return [=](const std::vector<int64_t>& values) {
    for (const int64_t v : values) {
      if (v < min)
        return "expected integers >= " + std::to_string(min);
    }
    return Error();
  };
}

Check<double> number_at_least(double min) {
  return [=](double v) {
    std::ostringstream message;
    message << "expected a number >= " << min;
    return v >= min ? Error() : message.str();
  };
}

Check<double> number_above(double min) {
  return [=](double v) {
    std::ostringstream message;
    message << "expected a number > " << min;
    return v > min ? Error() : message.str();
  };
}

Check<double> number_in_half_open(double low, double high) {
  return [=](double v) {
    std::ostringstream message;
    message << "expected a number in [" << low << ", " << high << ")";
    return v >= low && v < high ? Error() : message.str();
  };
}

Check<std::string> one_of(std::vector<std::string> names) {
  return [names = std::move(names)](const std::string& v) {
    return std::find(names.begin(), names.end(), v) != names.end()
               ? Error()
               : "'" + v + "' is not one of " + join(names);
  };
}

// "auto" or a CPU or CUDA device as LibTorch writes it ("cpu", "cuda",
// "cuda:1"); whether that CUDA device exists is checked when training starts.
Check<std::string> device_name() {
  return [](const std::string& v) {
    if (v == "auto")
      return Error();
    try {
      const c10::Device device(v);
      if (device.is_cpu() || device.is_cuda())
        return Error();
    } catch (const c10::Error&) {
    }
    return "'" + v + "' is not a device: expected auto, cpu, cuda or cuda:N";
  };
}

Check<std::string> not_empty(const std::string& what) {
  return [=](const std::string& v) {
    return v.empty() ? "expected " + what : Error();
  };
}

Check<std::vector<StridePair>> strides_at_least_one() {
  return [](const std::vector<StridePair>& strides) {
    bool ok = !strides.empty();
    for (const auto& s : strides) {
      for (const double v : *s)
        ok = ok && v >= 1;
    }
    return ok ? Error() : Error(Codec<std::vector<StridePair>>::kExpected);
  };
}

Check<std::vector<int64_t>> positive_and_increasing() {
  return [](const std::vector<int64_t>& steps) {
    for (size_t i = 0; i < steps.size(); ++i) {
      if (steps[i] <= 0 || (i > 0 && steps[i] <= steps[i - 1]))
        return Error("expected strictly increasing steps > 0");
    }
    return Error();
  };
}

// Values > 0 that a float32 parameter update can hold.
Check<std::vector<double>> all_positive_floats(const std::string& what) {
  return [=](const std::vector<double>& values) {
    for (const double v : values) {
      if (!(v > 0 && v <= std::numeric_limits<float>::max()))
        return "expected " + what + " > 0 and within float range";
    }
    return Error();
  };
}

// ---------------------------------------------------------------------------
// The schema.

struct Key {
  std::string section, name, type, help;
  // Reads the node into the config; returns the error otherwise.
  std::function<Error(const toml::node&, TrainConfig&)> read;
  // Adds the key to `table` (an unset optional adds nothing).
  std::function<void(const TrainConfig&, toml::table&)> write;
  // The value as one line of TOML ("" for an unset optional).
  std::function<std::string(const TrainConfig&)> show;
};

template <typename T>
void write_value(const T& value, toml::table& table, const std::string& name) {
  if constexpr (kIsOptional<T>) {
    if (value)
      table.insert_or_assign(name, *value);
  } else {
    table.insert_or_assign(name, Codec<T>::write(value));
  }
}

// A value as the reference table shows it: TOML syntax, numbers with up to
// 6 significant digits (0.9, not 0.90000000000000002).
std::string brief(const toml::node& node) {
  std::ostringstream out;
  if (const auto* array = node.as_array()) {
    out << "[";
    for (size_t i = 0; i < array->size(); ++i)
      out << (i > 0 ? ", " : "") << brief((*array)[i]);
    out << "]";
  } else if (const auto* text = node.as_string()) {
    out << '"' << text->get() << '"';
  } else if (const auto* flag = node.as_boolean()) {
    out << (flag->get() ? "true" : "false");
  } else if (const auto* integer = node.as_integer()) {
    out << integer->get();
  } else {
    out << node.value<double>().value_or(0.0);
  }
  return out.str();
}

template <typename Member,
          typename T = std::decay_t<std::invoke_result_t<Member, TrainConfig&>>>
Key make_key(const char* section,
             const char* name,
             Member member,
             Check<T> check,
             const std::string& help) {
  Key key;
  key.section = section;
  key.name = name;
  key.type = Codec<T>::kType;
  key.help = help;
  key.read = [member, check](const toml::node& node, TrainConfig& config) {
    const auto value = Codec<T>::read(node);
    if (!value)
      return Error(Codec<T>::kExpected);
    const Error error = check(*value);
    if (error.empty())
      member(config) = *value;
    return error;
  };
  key.write = [member, name = std::string(name)](const TrainConfig& config,
                                                 toml::table& table) {
    write_value(member(config), table, name);
  };
  key.show = [member](const TrainConfig& config) {
    toml::table one;
    write_value(member(config), one, "v");
    const auto* node = one.get("v");
    return node == nullptr ? std::string() : brief(*node);
  };
  return key;
}

// One row per key: the section and key name are also the member's path.
#define DIFFSTRIDE_CONFIG_KEY(section, key, check, help) \
  make_key(                                              \
      #section,                                          \
      #key,                                              \
      [](auto& c) -> auto& { return c.section.key; },    \
      check,                                             \
      help)

// The library's factories and the config's own "resnet".
std::vector<std::string> factory_names() {
  auto names = resnet_factory_names();
  names.emplace_back(kCustomResNetFactory);
  return names;
}

const std::vector<Key>& schema() {
  static const std::vector<Key> keys = {
      DIFFSTRIDE_CONFIG_KEY(data,
                            dataset,
                            one_of(dataset_names()),
                            "the dataset: " + join(dataset_names())),
      DIFFSTRIDE_CONFIG_KEY(data,
                            data_dir,
                            any<std::string>(),
                            "its folder (empty: the dataset's default)"),
      DIFFSTRIDE_CONFIG_KEY(
          data, batch_size, integer_at_least(1), "examples per training batch"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            mixup_alpha,
                            number_at_least(0),
                            "mixup's Beta(alpha, alpha) (0: no mixup)"),
      DIFFSTRIDE_CONFIG_KEY(
          data, augment, any<bool>(), "pad 2, random crop and horizontal flip"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            image_size,
                            integer_in(0, kMaxImageSize, ""),
                            "image folders: side of the square examples"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            max_image_pixels,
                            integer_at_least(1),
                            "image folders: a file declaring more pixels "
                            "(width x height) is a bad file, refused before "
                            "it is decoded"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            channels,
                            integer_at_least(0),
                            "folders: images 3 (RGB) or 1 (gray), sound 1 "
                            "(mono) or 2 (0: 3 for images, 1 for sound)"),
      DIFFSTRIDE_CONFIG_KEY(
          data,
          train_crop,
          one_of(train_crop_names()),
          "image folders, training examples: " + join(train_crop_names()) +
              " (evaluation: shorter side resized, centre "
              "cropped)"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            sample_rate,
                            integer_in(1, kMaxSampleRate, ""),
                            "audio folders: the examples' sample rate (Hz)"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            clip_samples,
                            integer_in(1, kMaxClipSamples, ""),
                            "audio folders: samples per example (longer "
                            "sound cropped, shorter padded with silence)"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            max_sound_frames,
                            integer_at_least(1),
                            "audio folders: a file declaring more frames is "
                            "a bad file, refused before it is decoded"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            resample,
                            any<bool>(),
                            "audio folders: resample sound at another rate "
                            "(false: such files are bad files)"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            skip_bad_files,
                            any<bool>(),
                            "folders: skip (and count) files that cannot be "
                            "decoded instead of stopping"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            workers,
                            thread_count(1, ""),
                            "folders: threads decoding each batch"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            mean,
                            any<std::vector<double>>(),
                            "per-channel mean of pixels in [0, 1] (empty: the "
                            "dataset's)"),
      DIFFSTRIDE_CONFIG_KEY(data,
                            std,
                            all_positive_floats("standard deviations"),
                            "per-channel standard deviation (empty: the "
                            "dataset's)"),
      DIFFSTRIDE_CONFIG_KEY(model,
                            factory,
                            one_of(factory_names()),
                            "the network: " + join(resnet_factory_names()) +
                                ", or \"" + kCustomResNetFactory +
                                "\" with filters and strides given here"),
      DIFFSTRIDE_CONFIG_KEY(model,
                            strides,
                            strides_at_least_one(),
                            "stride per stage, a number or HxW (empty: the "
                            "factory's)"),
      DIFFSTRIDE_CONFIG_KEY(model,
                            filters,
                            each_at_least(1),
                            "filters per stage (empty: the factory's)"),
      DIFFSTRIDE_CONFIG_KEY(model,
                            layers_per_block,
                            absent_or_at_least(1,
                                               " (leave the key out for "
                                               "the factory's)"),
                            "residual layers per block (absent: the "
                            "factory's)"),
      DIFFSTRIDE_CONFIG_KEY(model,
                            id_only,
                            any<std::vector<int64_t>>(),
                            "blocks whose first layer is an identity layer "
                            "(factory \"resnet\")"),
      DIFFSTRIDE_CONFIG_KEY(model,
                            pooling,
                            one_of(pooling_names()),
                            "the downsampling: " + join(pooling_names())),
      DIFFSTRIDE_CONFIG_KEY(
          model, smoothness_factor, number_above(0), "DiffStride's R"),
      DIFFSTRIDE_CONFIG_KEY(
          model, cropping, any<bool>(), "DiffStride crops the masked spectrum"),
      DIFFSTRIDE_CONFIG_KEY(model,
                            shared_stride,
                            any<bool>(),
                            "one DiffStride stride for both axes"),
      DIFFSTRIDE_CONFIG_KEY(model,
                            trainable_strides,
                            any<bool>(),
                            "DiffStride's strides are learned"),
      DIFFSTRIDE_CONFIG_KEY(model,
                            lower_limit_stride,
                            number_at_least(1),
                            "lowest DiffStride stride"),
      DIFFSTRIDE_CONFIG_KEY(model,
                            upper_limit_stride,
                            any<std::optional<double>>(),
                            "highest DiffStride stride (absent: none)"),
      DIFFSTRIDE_CONFIG_KEY(
          optimizer, momentum, number_in_half_open(0, 1), "SGD momentum"),
      DIFFSTRIDE_CONFIG_KEY(optimizer,
                            boundaries,
                            positive_and_increasing(),
                            "steps where the learning rate changes"),
      DIFFSTRIDE_CONFIG_KEY(optimizer,
                            values,
                            all_positive_floats("learning rates"),
                            "learning rates, one more than boundaries"),
      DIFFSTRIDE_CONFIG_KEY(
          loss, label_smoothing, number_in_half_open(0, 1), "label smoothing"),
      DIFFSTRIDE_CONFIG_KEY(loss,
                            weight_decay,
                            number_at_least(0),
                            "L2 factor on convolution and dense weights"),
      DIFFSTRIDE_CONFIG_KEY(loss,
                            complexity_lambda,
                            number_at_least(0),
                            "weight of the complexity penalty on strides"),
      DIFFSTRIDE_CONFIG_KEY(
          train, epochs, integer_at_least(1), "epochs to train"),
      DIFFSTRIDE_CONFIG_KEY(train,
                            seed,
                            any<uint64_t>(),
                            "seed of initialisation and data order"),
      DIFFSTRIDE_CONFIG_KEY(train,
                            threads,
                            thread_count(0, "; 0: all cores"),
                            "intra-op threads (0: all cores)"),
      DIFFSTRIDE_CONFIG_KEY(train,
                            device,
                            device_name(),
                            "where to train: auto (CUDA when available), cpu, "
                            "cuda or cuda:N"),
      DIFFSTRIDE_CONFIG_KEY(train,
                            precision,
                            one_of(precision_names()),
                            "autocast precision: " + join(precision_names()) +
                                " (float16 with dynamic loss scaling, CUDA "
                                "only)"),
      DIFFSTRIDE_CONFIG_KEY(train,
                            channels_last,
                            any<bool>(),
                            "images and convolution weights in NHWC memory "
                            "order"),
      DIFFSTRIDE_CONFIG_KEY(train,
                            cudnn_benchmark,
                            any<bool>(),
                            "CUDA: cuDNN times its convolution algorithms "
                            "at each new shape and keeps the fastest (the "
                            "results may then differ between runs in the "
                            "last bits)"),
      DIFFSTRIDE_CONFIG_KEY(train,
                            collective_timeout_seconds,
                            number_above(0),
                            "several processes: a rank waits this long for "
                            "the others before it stops with an error"),
      DIFFSTRIDE_CONFIG_KEY(
          train, out, not_empty("a folder"), "the run folder"),
      DIFFSTRIDE_CONFIG_KEY(train,
                            log_every_steps,
                            integer_at_least(1),
                            "steps between reads of the training figures: the "
                            "step-loss scalar, the progress line, and where "
                            "several processes can stop"),
  };
  return keys;
}

#undef DIFFSTRIDE_CONFIG_KEY

// The sections, in the schema's order.
std::vector<std::string> section_names() {
  std::vector<std::string> sections;
  for (const auto& key : schema()) {
    if (std::find(sections.begin(), sections.end(), key.section) ==
        sections.end())
      sections.push_back(key.section);
  }
  return sections;
}

std::vector<std::string> key_names(const std::string& section) {
  std::vector<std::string> names;
  for (const auto& key : schema()) {
    if (key.section == section)
      names.push_back(key.name);
  }
  return names;
}

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

// Every section and key of `root` is in the schema.
void check_known_keys(const toml::table& root, const std::string& origin) {
  const auto sections = section_names();
  for (const auto& [section, node] : root) {
    const std::string name(section.str());
    TORCH_CHECK(
        std::find(sections.begin(), sections.end(), name) != sections.end(),
        origin,
        ": unknown section [",
        name,
        "]; known sections: ",
        join(sections));
    const auto* table = node.as_table();
    TORCH_CHECK(table != nullptr, origin, ": ", name, " must be a section");
    const auto keys = key_names(name);
    for (const auto& [key, value] : *table) {
      TORCH_CHECK(std::find(keys.begin(), keys.end(), std::string(key.str())) !=
                      keys.end(),
                  origin,
                  ": unknown key '",
                  name,
                  ".",
                  key.str(),
                  "'; known keys of [",
                  name,
                  "]: ",
                  join(keys));
    }
  }
}

// What no single key can check: agreement between keys.
void check_consistency(const TrainConfig& c, const std::string& origin) {
  TORCH_CHECK(c.model.factory != kCustomResNetFactory ||
                  (!c.model.filters.empty() && !c.model.strides.empty()),
              origin,
              ": model.factory: \"",
              kCustomResNetFactory,
              "\" needs model.filters and model.strides");
  TORCH_CHECK(!c.model.upper_limit_stride ||
                  *c.model.upper_limit_stride >= c.model.lower_limit_stride,
              origin,
              ": model.upper_limit_stride: expected a number >= "
              "model.lower_limit_stride (",
              c.model.lower_limit_stride,
              "), got ",
              c.model.upper_limit_stride.value_or(0));
  TORCH_CHECK(c.optimizer.values.size() == c.optimizer.boundaries.size() + 1,
              origin,
              ": optimizer.values: expected one more value than "
              "optimizer.boundaries (",
              c.optimizer.boundaries.size(),
              " boundaries, ",
              c.optimizer.values.size(),
              " values)");
}

}  // namespace

TrainConfig parse_train_config(const std::string& toml_text,
                               const std::vector<std::string>& overrides,
                               const std::string& origin) {
  auto root = parse_toml(toml_text, origin);
  for (const auto& item : overrides) {
    apply_override(root, item);
  }
  check_known_keys(root, origin);
  TrainConfig config;
  for (const auto& key : schema()) {
    const auto* table = root.get_as<toml::table>(key.section);
    const auto* node = table == nullptr ? nullptr : table->get(key.name);
    if (node == nullptr)
      continue;
    const Error error = key.read(*node, config);
    TORCH_CHECK(
        error.empty(), origin, ": ", key.section, ".", key.name, ": ", error);
  }
  check_consistency(config, origin);
  return config;
}

TrainConfig load_train_config(const std::string& path,
                              const std::vector<std::string>& overrides) {
  if (path.empty()) {
    return parse_train_config(
        default_train_config_toml(), overrides, "default config");
  }
  std::error_code status_error;
  const auto status = std::filesystem::status(path, status_error);
  TORCH_CHECK(std::filesystem::exists(status), path, ": config file not found");
  TORCH_CHECK(std::filesystem::is_regular_file(status),
              path,
              ": not a regular file; expected a TOML config file");
  std::ifstream in(path);
  TORCH_CHECK(in.good(), path, ": config file unreadable");
  std::stringstream text;
  text << in.rdbuf();
  return parse_train_config(text.str(), overrides, path);
}

FolderOptions folder_options(const TrainConfig::Data& data) {
  return FolderOptions()
      .image_size(data.image_size)
      .max_image_pixels(data.max_image_pixels)
      .channels(data.channels)
      .train_crop(data.train_crop)
      .sample_rate(data.sample_rate)
      .clip_samples(data.clip_samples)
      .max_sound_frames(data.max_sound_frames)
      .resample(data.resample)
      .skip_bad_files(data.skip_bad_files)
      .workers(data.workers);
}

int64_t max_threads() {
  return kThreadsPerCore * static_cast<int64_t>(std::max(
                               1u, std::thread::hardware_concurrency()));
}

std::string to_toml(const TrainConfig& config) {
  toml::table root;
  for (const auto& key : schema()) {
    if (!root.contains(key.section))
      root.insert_or_assign(key.section, toml::table{});
    key.write(config, *root.get_as<toml::table>(key.section));
  }
  std::ostringstream out;
  out << root << "\n";
  return out.str();
}

std::string train_config_reference() {
  const TrainConfig defaults;
  std::ostringstream out;
  out << "| key | type | default | meaning |\n"
      << "| --- | --- | --- | --- |\n";
  for (const auto& key : schema()) {
    const std::string value = key.show(defaults);
    out << "| `" << key.section << "." << key.name << "` | " << key.type
        << " | " << (value.empty() ? "" : "`" + value + "`") << " | "
        << key.help << " |\n";
  }
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
