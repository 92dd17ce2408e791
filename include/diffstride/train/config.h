#pragma once

// The training recipe as a config file (TOML): everything the reference's
// cifar10.gin expresses, plus the run's seed, threads and output folder
// (docs/training.md). Every key is declared once, in the schema of
// src/train/config.cpp, which reads, checks, writes and documents it;
// `configs/` holds the shipped recipes.

#include <diffstride/data/dataset.h>
#include <diffstride/nn/stride_pair.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace diffstride {

struct TrainConfig {
  struct Data {
    std::string dataset = "fashion_mnist";
    std::string data_dir;  // empty: the dataset's default
    int64_t batch_size = 128;
    double mixup_alpha = 0.0;
    bool augment = false;
    // Image and audio folders (docs/data.md), defaults as FolderOptions'.
    int64_t image_size = FolderOptions().image_size();
    int64_t max_image_pixels = FolderOptions().max_image_pixels();
    int64_t channels = FolderOptions().channels();
    std::string train_crop = FolderOptions().train_crop();
    int64_t sample_rate = FolderOptions().sample_rate();
    int64_t clip_samples = FolderOptions().clip_samples();
    int64_t max_sound_frames = FolderOptions().max_sound_frames();
    bool resample = FolderOptions().resample();
    bool skip_bad_files = FolderOptions().skip_bad_files();
    int64_t workers = FolderOptions().workers();
    // Normalisation; empty: the dataset's own constants.
    std::vector<double> mean;
    std::vector<double> std;
  } data;
  struct Model {
    std::string factory = "resnet18";
    std::vector<StridePair> strides;          // empty: the factory's
    std::vector<int64_t> filters;             // empty: the factory's
    std::optional<int64_t> layers_per_block;  // none: the factory's
    std::vector<int64_t> id_only;             // used with factory "resnet"
    std::string pooling = "diffstride";
    double smoothness_factor = 4.0;
    bool cropping = true;
    bool shared_stride = false;
    bool trainable_strides = true;
    double lower_limit_stride = 1.0;
    std::optional<double> upper_limit_stride;
  } model;
  struct Optimizer {
    double momentum = 0.9;
    std::vector<int64_t> boundaries = {400, 18000, 32000};
    std::vector<double> values = {0.01, 0.1, 0.01, 0.001};
  } optimizer;
  struct Loss {
    double label_smoothing = 0.2;
    double weight_decay = 5e-4;
    double complexity_lambda = 0.0;
  } loss;
  struct Train {
    int64_t epochs = 400;
    uint64_t seed = 0;
    int64_t threads = 0;                // 0: all cores
    std::string device = "auto";        // auto, cpu, cuda or cuda:N
    std::string precision = "float32";  // float32, bfloat16 or float16
    bool channels_last = false;
    bool cudnn_benchmark = true;
    double collective_timeout_seconds = 300;
    std::string out = "runs/train";
    int64_t log_every_steps = 20;
  } train;
};

/// The most threads train.threads, data.workers and the tool's --threads
/// accept: kThreadsPerCore x the machine's cores (more only stall creating
/// them).
constexpr int64_t kThreadsPerCore = 4;
int64_t max_threads();

/// The largest data.image_size, data.clip_samples and data.sample_rate a
/// config accepts: an example is allocated at that size for every example
/// of a batch.
constexpr int64_t kMaxImageSize = 4096;
constexpr int64_t kMaxClipSamples = int64_t{1} << 24;
constexpr int64_t kMaxSampleRate = 768000;

/// The model factory name that takes filters and strides from the config
/// rather than from a library factory.
constexpr const char* kCustomResNetFactory = "resnet";

/// The recipe `diffstride train` uses without a config file: a small
/// DiffStride ResNet on Fashion-MNIST that trains in minutes on 2 cores.
/// It is configs/fashion_mnist.toml, embedded at build time.
std::string default_train_config_toml();

/// Parses TOML text, then applies `overrides` ("section.key=value", the value
/// in TOML syntax or a bare string). A list key takes a TOML array, a single
/// value, or a comma-separated string ("8,8,8"; strides also "1,1,2x3,2").
/// Unknown sections or keys, wrong types and invalid values: an error naming
/// the key and `origin` (a file name, for messages).
TrainConfig parse_train_config(const std::string& toml_text,
                               const std::vector<std::string>& overrides = {},
                               const std::string& origin = "config");

/// Reads `path` (default_train_config_toml() when empty), then as above.
TrainConfig load_train_config(const std::string& path,
                              const std::vector<std::string>& overrides = {});

/// The config as TOML, every key written out: parse_train_config of it gives
/// the same config.
std::string to_toml(const TrainConfig& config);

/// Every config key as a Markdown table (key, type, default when absent,
/// meaning), from the schema: `diffstride train --help-config` prints it.
std::string train_config_reference();

/// How the folders of `data` (image and audio folders) make their examples.
FolderOptions folder_options(const TrainConfig::Data& data);

/// The learning rate at `step` (counted from 0): values[i] while step <
/// boundaries[i], values.back() after the last boundary.
double learning_rate_at(const TrainConfig::Optimizer& optimizer, int64_t step);

}  // namespace diffstride
