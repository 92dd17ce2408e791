#include <diffstride/data/image_folder.h>

#include "data/image_decoding.h"
#include "data/random_draws.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>

namespace diffstride {

namespace fs = std::filesystem;

std::vector<std::string> train_crop_names() {
  return {"random_resized", "center"};
}

namespace {

bool has_image_extension(const fs::path& path) {
  auto extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return extension == ".jpg" || extension == ".jpeg" || extension == ".png";
}

// The shorter side's centred square: with the resize to image_size, the
// evaluation crop (shorter side resized, centre cropped).
detail::CropBox centre_box(int64_t height, int64_t width) {
  const double side = static_cast<double>(std::min(height, width));
  return {(static_cast<double>(height) - side) / 2,
          (static_cast<double>(width) - side) / 2,
          side,
          side};
}

// torchvision's RandomResizedCrop box: area 8-100%, log-uniform aspect ratio
// in [3/4, 4/3], ten tries, then the centre crop clamped to those ratios.
detail::CropBox random_resized_box(int64_t height,
                                   int64_t width,
                                   detail::SplitMix64& rng) {
  const double area = static_cast<double>(height * width);
  const double log_low = std::log(3.0 / 4.0), log_high = std::log(4.0 / 3.0);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * (0.08 + 0.92 * rng.uniform());
    const double aspect =
        std::exp(log_low + (log_high - log_low) * rng.uniform());
    const auto w = static_cast<int64_t>(std::lround(std::sqrt(target * aspect)));
    const auto h = static_cast<int64_t>(std::lround(std::sqrt(target / aspect)));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      const auto top = static_cast<double>(rng.below(height - h + 1));
      const auto left = static_cast<double>(rng.below(width - w + 1));
      return {top, left, static_cast<double>(h), static_cast<double>(w)};
    }
  }
  double w = static_cast<double>(width), h = static_cast<double>(height);
  if (w / h < 3.0 / 4.0) {
    h = std::round(w * 4.0 / 3.0);
  } else if (w / h > 4.0 / 3.0) {
    w = std::round(h * 4.0 / 3.0);
  }
  return {(static_cast<double>(height) - h) / 2,
          (static_cast<double>(width) - w) / 2,
          h,
          w};
}

class ImageFolderReader : public ExampleReader {
 public:
  ImageFolderReader(std::vector<std::string> files,
                    ImageFolderOptions options,
                    bool random_crops,
                    int64_t skipped_when_indexed)
      : files_(std::move(files)),
        options_(std::move(options)),
        random_crops_(random_crops),
        skipped_(skipped_when_indexed) {}

  std::vector<int64_t> example_shape() const override {
    return {options_.channels(), options_.image_size(), options_.image_size()};
  }

  int64_t read(int64_t index, uint64_t draw, float* out) const override {
    const auto count = static_cast<int64_t>(files_.size());
    for (int64_t step = 0; step < count; ++step) {
      const int64_t i = (index + step) % count;
      if (known_bad(i)) {
        continue;
      }
      detail::DecodedImage image;
      try {
        image = detail::decode_image(files_[static_cast<size_t>(i)],
                                     options_.channels());
      } catch (const std::runtime_error& error) {
        if (!options_.skip_bad_files()) {
          throw std::runtime_error(
              std::string(error.what()) +
              " (set data.skip_bad_files = true to skip such files)");
        }
        mark_bad(i);
        continue;
      }
      detail::SplitMix64 rng{draw};
      const bool random = random_crops_;
      const auto box = random ? random_resized_box(image.height, image.width, rng)
                              : centre_box(image.height, image.width);
      const bool mirror = random && rng.below(2) == 1;
      detail::resample(image, box, options_.image_size(), mirror, out);
      return i;
    }
    throw std::runtime_error("no readable image left in the folder");
  }

  double full_scale() const override {
    return 255.0;
  }

  int64_t workers() const override {
    return options_.workers();
  }

  int64_t skipped_files() const override {
    return skipped_.load();
  }

 private:
  bool known_bad(int64_t i) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return bad_.count(i) != 0;
  }
  void mark_bad(int64_t i) const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (bad_.insert(i).second) {
      ++skipped_;
    }
  }

  std::vector<std::string> files_;
  ImageFolderOptions options_;
  bool random_crops_;
  mutable std::atomic<int64_t> skipped_;
  mutable std::mutex mutex_;
  mutable std::set<int64_t> bad_;
};

std::vector<std::string> sorted_subfolders(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_directory()) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

Dataset load_image_folder(const std::string& dir,
                          const std::string& split,
                          const ImageFolderOptions& options) {
  TORCH_CHECK(options.image_size() >= 1,
              "image folders: expected data.image_size >= 1 (the side of "
              "the square examples), got ",
              options.image_size());
  TORCH_CHECK(options.channels() == 1 || options.channels() == 3,
              "image folders: expected 1 or 3 channels, got ",
              options.channels());
  const auto crops = train_crop_names();
  TORCH_CHECK(std::find(crops.begin(), crops.end(), options.train_crop()) !=
                  crops.end(),
              "image folders: unknown training crop '",
              options.train_crop(),
              "': expected random_resized or center");
  TORCH_CHECK(options.workers() >= 1,
              "image folders: expected at least 1 worker, got ",
              options.workers());
  TORCH_CHECK(split == "train" || split == "test",
              "unknown split '",
              split,
              "': expected train or test");
  const std::string layout =
      "an image folder holds train/ and val/ (or test/), each with one "
      "subfolder of JPEG and PNG files per class";
  const fs::path root = dir;
  const fs::path train_dir = root / "train";
  TORCH_CHECK(fs::is_directory(train_dir), train_dir.string(), " not found; ",
              layout);
  fs::path split_dir = train_dir;
  if (split == "test") {
    split_dir = fs::is_directory(root / "val") ? root / "val" : root / "test";
    TORCH_CHECK(fs::is_directory(split_dir),
                (root / "val").string(),
                " (or test/) not found; ",
                layout);
  }
  const auto classes = sorted_subfolders(train_dir);
  TORCH_CHECK(!classes.empty(), train_dir.string(),
              " has no class subfolders; ", layout);
  std::map<std::string, int64_t> class_index;
  for (size_t k = 0; k < classes.size(); ++k) {
    class_index[classes[k]] = static_cast<int64_t>(k);
  }
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  int64_t not_images = 0;
  for (const auto& name : sorted_subfolders(split_dir)) {
    const auto found = class_index.find(name);
    TORCH_CHECK(found != class_index.end(),
                (split_dir / name).string(),
                ": a class that train/ does not have");
    std::vector<std::string> in_class;
    for (const auto& entry : fs::directory_iterator(split_dir / name)) {
      if (!entry.is_regular_file()) {
        continue;
      }
      if (!has_image_extension(entry.path())) {
        TORCH_CHECK(options.skip_bad_files(),
                    entry.path().string(),
                    ": not a .jpg, .jpeg or .png file (set "
                    "data.skip_bad_files = true to skip such files)");
        ++not_images;
        continue;
      }
      in_class.push_back(entry.path().string());
    }
    std::sort(in_class.begin(), in_class.end());
    for (auto& f : in_class) {
      files.push_back(std::move(f));
      labels.push_back(found->second);
    }
  }
  TORCH_CHECK(!files.empty(), split_dir.string(), " holds no images; ", layout);
  Dataset data;
  data.name = "image_folder";
  data.num_classes = static_cast<int64_t>(classes.size());
  data.class_names = classes;
  data.labels = at::tensor(labels, at::kLong);
  const bool random_crops =
      split == "train" && options.train_crop() == "random_resized";
  data.reader = std::make_shared<ImageFolderReader>(
      std::move(files), options, random_crops, not_images);
  return data;
}

}  // namespace diffstride
