#include <diffstride/data/image_folder.h>

#include "data/class_folders.h"
#include "data/image_decoding.h"
#include "data/random_draws.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

namespace diffstride {

namespace {

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
    const auto w =
        static_cast<int64_t>(std::lround(std::sqrt(target * aspect)));
    const auto h =
        static_cast<int64_t>(std::lround(std::sqrt(target / aspect)));
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

class ImageFolderReader : public detail::FolderReader {
 public:
  ImageFolderReader(const detail::ClassFolders& index,
                    FolderOptions options,
                    bool random_crops)
      : FolderReader(index, std::move(options)), random_crops_(random_crops) {}

  std::vector<int64_t> example_shape() const override {
    return {options_.channels(), options_.image_size(), options_.image_size()};
  }

  double full_scale() const override {
    return 255.0;
  }

 protected:
  void decode(const std::string& path,
              uint64_t draw,
              float* out) const override {
    const auto image = detail::decode_image(
        path, options_.channels(), options_.max_image_pixels());
    detail::SplitMix64 rng{draw};
    const auto box = random_crops_
                         ? random_resized_box(image.height, image.width, rng)
                         : centre_box(image.height, image.width);
    const bool mirror = random_crops_ && rng.below(2) == 1;
    detail::resample(image, box, options_.image_size(), mirror, out);
  }

 private:
  bool random_crops_;
};

}  // namespace

Dataset load_image_folder(const std::string& dir,
                          const std::string& split,
                          FolderOptions options) {
  TORCH_CHECK(options.image_size() >= 1,
              "image folders: expected data.image_size >= 1 (the side of "
              "the square examples), got ",
              options.image_size());
  if (options.channels() == 0) {
    options.channels(3);
  }
  TORCH_CHECK(options.channels() == 1 || options.channels() == 3,
              "image folders: expected 1 or 3 channels, got ",
              options.channels());
  const auto crops = train_crop_names();
  TORCH_CHECK(std::find(crops.begin(), crops.end(), options.train_crop()) !=
                  crops.end(),
              "image folders: unknown training crop '",
              options.train_crop(),
              "': expected random_resized or center");
  const auto index = detail::index_class_folders(dir,
                                                 split,
                                                 {".jpg", ".jpeg", ".png"},
                                                 "images",
                                                 options.skip_bad_files());
  const bool random_crops =
      split == "train" && options.train_crop() == "random_resized";
  return detail::folder_dataset(
      "image_folder",
      index,
      std::make_shared<ImageFolderReader>(index, options, random_crops));
}

}  // namespace diffstride
