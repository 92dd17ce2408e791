#include <diffstride/data/audio_folder.h>
#include <diffstride/data/cifar.h>
#include <diffstride/data/dataset.h>
#include <diffstride/data/idx.h>
#include <diffstride/data/image_folder.h>

#include <c10/util/Exception.h>

#include <filesystem>

namespace diffstride {

namespace fs = std::filesystem;

std::string skipped_files_message(int64_t count) {
  return std::to_string(count) +
         " file(s) skipped as bad files (unreadable, damaged, too large or "
         "not of the folder's kind)";
}

std::vector<std::string> train_crop_names() {
  return {"random_resized", "center"};
}

std::vector<std::string> dataset_names() {
  return {
      "cifar10", "cifar100", "fashion_mnist", "image_folder", "audio_folder"};
}

Normalization dataset_normalization(const std::string& name) {
  if (name == "cifar10" || name == "cifar100") {
    return {{0.4914, 0.4822, 0.4465}, {0.2023, 0.1994, 0.2010}};
  }
  if (name == "fashion_mnist") {
    return {{0.2860}, {0.3530}};
  }
  TORCH_CHECK(name != "image_folder" && name != "audio_folder",
              "folders of files have no built-in normalisation: set "
              "data.mean and data.std (`diffstride data --dataset ",
              name,
              " --data-dir DIR ...` computes them over the training split)");
  TORCH_CHECK(false,
              "unknown dataset '",
              name,
              "': expected one of cifar10, cifar100, fashion_mnist, "
              "image_folder, audio_folder");
}

std::string default_data_dir(const std::string& name) {
  if (name == "fashion_mnist") {
    return "/usr/share/datasets/fashion-mnist";
  }
  return "data/" + name;
}

Dataset load_dataset(const std::string& name,
                     const std::string& split,
                     const std::string& data_dir,
                     const FolderOptions& folder) {
  if (name == "image_folder" || name == "audio_folder") {
    TORCH_CHECK(!data_dir.empty(),
                name,
                ": expected data.data_dir, the folder holding train/ and "
                "val/");
#ifdef DIFFSTRIDE_HAVE_FOLDERS
    return name == "image_folder" ? load_image_folder(data_dir, split, folder)
                                  : load_audio_folder(data_dir, split, folder);
#else
    TORCH_CHECK(false,
                name,
                ": this build of diffstride reads no folders of files (it was "
                "configured with -DDIFFSTRIDE_FOLDERS=OFF)");
#endif
  }
  dataset_normalization(name);  // checks the name
  TORCH_CHECK(split == "train" || split == "test",
              "unknown split '",
              split,
              "': expected train or test");
  const std::string dir = data_dir.empty() ? default_data_dir(name) : data_dir;
  const bool train = split == "train";
  if (name == "cifar10") {
    return load_cifar10(dir, train);
  }
  if (name == "cifar100") {
    return load_cifar100(dir, train);
  }
  const std::string layout =
      "Fashion-MNIST needs train-images-idx3-ubyte, train-labels-idx1-ubyte, "
      "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each may be .gz) in "
      "one folder, as Debian's dataset-fashion-mnist installs them in "
      "/usr/share/datasets/fashion-mnist";
  TORCH_CHECK(fs::is_directory(dir), "folder ", dir, " not found; ", layout);
  // Debian installs the gzip files; unpacked ones work too.
  const auto find = [&](const std::string& base) {
    const auto path = fs::path(dir) / base;
    if (fs::exists(path.string() + ".gz")) {
      return path.string() + ".gz";
    }
    TORCH_CHECK(fs::exists(path), path.string(), "(.gz) not found; ", layout);
    return path.string();
  };
  const std::string prefix = train ? "train" : "t10k";
  return load_idx_dataset(name,
                          find(prefix + "-images-idx3-ubyte"),
                          find(prefix + "-labels-idx1-ubyte"),
                          10);
}

}  // namespace diffstride
