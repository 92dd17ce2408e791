#include <diffstride/data/cifar.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <vector>

namespace diffstride {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kImageBytes = 3 * 32 * 32;

// The folder holding `first_file`: `dir` itself or its subfolder `sub`.
fs::path find_folder(const std::string& dir,
                     const std::string& sub,
                     const std::string& first_file,
                     const std::string& layout) {
  TORCH_CHECK(fs::is_directory(dir), "folder ", dir, " not found; ", layout);
  for (const auto& candidate : {fs::path(dir), fs::path(dir) / sub}) {
    if (fs::exists(candidate / first_file)) {
      return candidate;
    }
  }
  TORCH_CHECK(false, fs::path(dir) / first_file, " not found; ", layout);
}

// `records` records of `label_bytes` label bytes then an image, exactly:
// appends the images (as stored: 1024 red, 1024 green, 1024 blue) and each
// record's label bytes.
void read_records(const fs::path& path,
                  int64_t records,
                  int64_t label_bytes,
                  std::vector<uint8_t>& images,
                  std::vector<uint8_t>& labels,
                  const std::string& layout) {
  std::error_code error;
  const auto status = fs::status(path, error);
  TORCH_CHECK(fs::exists(status), path, " not found; ", layout);
  // A FIFO would block and a device never end.
  TORCH_CHECK(fs::is_regular_file(status),
              path,
              ": not a regular file; expected a CIFAR binary batch");
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.good(), path, " unreadable; ", layout);
  const int64_t record = label_bytes + kImageBytes;
  const auto size = static_cast<int64_t>(fs::file_size(path));
  TORCH_CHECK(size == records * record,
              path,
              ": expected ",
              records,
              " records of ",
              record,
              " bytes (",
              label_bytes,
              " label byte",
              label_bytes > 1 ? "s" : "",
              " + 3072 image bytes) = ",
              records * record,
              " bytes, got ",
              size,
              " bytes",
              size < records * record ? " (truncated?)" : "");
  std::vector<uint8_t> buffer(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(buffer.data()), size);
  TORCH_CHECK(in.gcount() == size,
              path,
              ": read ",
              in.gcount(),
              " of ",
              size,
              " bytes");
  for (int64_t r = 0; r < records; ++r) {
    const uint8_t* p = buffer.data() + r * record;
    labels.insert(labels.end(), p, p + label_bytes);
    images.insert(images.end(), p + label_bytes, p + record);
  }
}

at::Tensor to_images(const std::vector<uint8_t>& bytes) {
  const int64_t n = static_cast<int64_t>(bytes.size()) / kImageBytes;
  auto images = at::empty({n, 3, 32, 32}, at::kByte);
  std::copy(bytes.begin(), bytes.end(), images.data_ptr<uint8_t>());
  return images;
}

// Labels at `offset` of each `stride`-byte group, checked below `classes`.
at::Tensor to_labels(const std::vector<uint8_t>& bytes,
                     int64_t stride,
                     int64_t offset,
                     int64_t classes,
                     const std::string& what,
                     const std::string& files) {
  const int64_t n = static_cast<int64_t>(bytes.size()) / stride;
  auto labels = at::empty({n}, at::kLong);
  auto* out = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    out[i] = bytes[i * stride + offset];
    TORCH_CHECK(out[i] < classes,
                files,
                ": record ",
                i,
                " has ",
                what,
                " ",
                out[i],
                ", out of range: expected below ",
                classes);
  }
  return labels;
}

}  // namespace

Dataset load_cifar10(const std::string& dir,
                     bool train,
                     int64_t records_per_file) {
  const std::string layout =
      "CIFAR-10 needs the binary version (cifar-10-binary.tar.gz from "
      "https://www.cs.toronto.edu/~kriz/cifar.html, which this machine cannot "
      "download: obtain it and unpack it): a folder with data_batch_1.bin .. "
      "data_batch_5.bin and test_batch.bin (or cifar-10-batches-bin/ holding "
      "them)";
  const auto folder = find_folder(dir,
                                  "cifar-10-batches-bin",
                                  train ? "data_batch_1.bin" : "test_batch.bin",
                                  layout);
  std::vector<std::string> files;
  if (train) {
    for (int i = 1; i <= 5; ++i) {
      files.push_back("data_batch_" + std::to_string(i) + ".bin");
    }
  } else {
    files.push_back("test_batch.bin");
  }
  // Labels are checked file by file, so that an error names the file.
  std::vector<uint8_t> images;
  std::vector<at::Tensor> labels;
  for (const auto& file : files) {
    std::vector<uint8_t> file_labels;
    read_records(
        folder / file, records_per_file, 1, images, file_labels, layout);
    labels.push_back(
        to_labels(file_labels, 1, 0, 10, "label", (folder / file).string()));
  }
  Dataset dataset;
  dataset.name = "cifar10";
  dataset.images = to_images(images);
  dataset.labels = at::cat(labels);
  dataset.num_classes = 10;
  return dataset;
}

Dataset load_cifar100(const std::string& dir,
                      bool train,
                      int64_t train_records,
                      int64_t test_records) {
  const std::string layout =
      "CIFAR-100 needs the binary version (cifar-100-binary.tar.gz from "
      "https://www.cs.toronto.edu/~kriz/cifar.html, which this machine cannot "
      "download: obtain it and unpack it): a folder with train.bin and "
      "test.bin (or cifar-100-binary/ holding them)";
  const std::string file = train ? "train.bin" : "test.bin";
  const auto folder = find_folder(dir, "cifar-100-binary", file, layout);
  std::vector<uint8_t> images, labels;
  read_records(folder / file,
               train ? train_records : test_records,
               2,
               images,
               labels,
               layout);
  Dataset dataset;
  dataset.name = "cifar100";
  dataset.images = to_images(images);
  dataset.coarse_labels =
      to_labels(labels, 2, 0, 20, "coarse label", (folder / file).string());
  dataset.labels =
      to_labels(labels, 2, 1, 100, "fine label", (folder / file).string());
  dataset.num_classes = 100;
  return dataset;
}

}  // namespace diffstride
