#include "data/class_folders.h"

#include "data/regular_file.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <stdexcept>

namespace diffstride {
namespace detail {

namespace fs = std::filesystem;

namespace {

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

std::string lower_extension(const fs::path& path) {
  auto extension = path.extension().string();
  std::transform(extension.begin(),
                 extension.end(),
                 extension.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return extension;
}

// What a directory entry that is not a regular file is.
std::string kind_of(const fs::path& path) {
  std::error_code error;
  const auto target = fs::status(path, error).type();
  if (fs::is_symlink(fs::symlink_status(path, error)) &&
      target == fs::file_type::not_found) {
    return "a dangling symbolic link";
  }
  const auto kind = file_kind(target);
  return kind.empty() ? "unreadable" : kind;
}

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == words.size() ? " or " : ", ") + words[i];
  }
  return out;
}

// The entries of a split's folder beside its class folders: each is an
// error, or with `skip_bad_files` counted and skipped.
int64_t stray_entries(const fs::path& split_dir, bool skip_bad_files) {
  int64_t stray = 0;
  for (const auto& entry : fs::directory_iterator(split_dir)) {
    std::error_code error;
    if (!entry.is_directory(error)) {
      TORCH_CHECK(skip_bad_files,
                  entry.path().string(),
                  ": not a class folder (",
                  fs::is_regular_file(entry.path(), error)
                      ? "a file"
                      : kind_of(entry.path()),
                  "; set data.skip_bad_files = true to skip such entries)");
      ++stray;
    }
  }
  return stray;
}

// What is wrong with an entry of a class folder, or "": a link counts as
// what it points to; anything but a regular file with one of the
// extensions is a bad entry.
std::string entry_problem(const fs::directory_entry& entry,
                          const std::vector<std::string>& extensions) {
  std::error_code error;
  if (!entry.is_regular_file(error)) {
    return ": not a regular file (" + kind_of(entry.path()) + ")";
  }
  const auto extension = lower_extension(entry.path());
  if (std::find(extensions.begin(), extensions.end(), extension) ==
      extensions.end()) {
    return ": not a " + joined(extensions) + " file";
  }
  return "";
}

}  // namespace

ClassFolders index_class_folders(const std::string& dir,
                                 const std::string& split,
                                 const std::vector<std::string>& extensions,
                                 const std::string& kind,
                                 bool skip_bad_files) {
  TORCH_CHECK(split == "train" || split == "test",
              "unknown split '",
              split,
              "': expected train or test");
  const std::string layout =
      "the folder holds train/ and val/ (or test/), "
      "each with one subfolder of " +
      kind + " (" + joined(extensions) + ") per class";
  const fs::path root = dir;
  const fs::path train_dir = root / "train";
  TORCH_CHECK(
      fs::is_directory(train_dir), train_dir.string(), " not found; ", layout);
  fs::path split_dir = train_dir;
  if (split == "test") {
    split_dir = fs::is_directory(root / "val") ? root / "val" : root / "test";
    TORCH_CHECK(fs::is_directory(split_dir),
                (root / "val").string(),
                " (or test/) not found; ",
                layout);
  }
  ClassFolders index;
  index.classes = sorted_subfolders(train_dir);
  TORCH_CHECK(!index.classes.empty(),
              train_dir.string(),
              " has no class subfolders; ",
              layout);
  std::map<std::string, int64_t> class_index;
  for (size_t k = 0; k < index.classes.size(); ++k) {
    class_index[index.classes[k]] = static_cast<int64_t>(k);
  }
  index.skipped += stray_entries(split_dir, skip_bad_files);
  for (const auto& name : sorted_subfolders(split_dir)) {
    const auto found = class_index.find(name);
    TORCH_CHECK(found != class_index.end(),
                (split_dir / name).string(),
                ": a class that train/ does not have");
    std::vector<std::string> in_class;
    for (const auto& entry : fs::directory_iterator(split_dir / name)) {
      const std::string why = entry_problem(entry, extensions);
      if (!why.empty()) {
        TORCH_CHECK(skip_bad_files,
                    entry.path().string(),
                    why,
                    " (set data.skip_bad_files = true to skip such "
                    "entries)");
        ++index.skipped;
        continue;
      }
      in_class.push_back(entry.path().string());
    }
    std::sort(in_class.begin(), in_class.end());
    for (auto& f : in_class) {
      index.files.push_back(std::move(f));
      index.labels.push_back(found->second);
    }
  }
  TORCH_CHECK(!index.files.empty(),
              split_dir.string(),
              " holds no ",
              kind,
              "; ",
              layout);
  return index;
}

Dataset folder_dataset(const std::string& name,
                       const ClassFolders& index,
                       std::shared_ptr<const ExampleReader> reader) {
  Dataset data;
  data.name = name;
  data.num_classes = static_cast<int64_t>(index.classes.size());
  data.class_names = index.classes;
  data.labels = at::tensor(index.labels, at::kLong);
  data.reader = std::move(reader);
  return data;
}

FolderReader::FolderReader(const ClassFolders& index, FolderOptions options)
    : options_(std::move(options)),
      files_(index.files),
      skipped_(index.skipped) {
  TORCH_CHECK(options_.workers() >= 1,
              "expected at least 1 worker, got ",
              options_.workers());
}

int64_t FolderReader::read(int64_t index, uint64_t draw, float* out) const {
  const auto count = static_cast<int64_t>(files_.size());
  for (int64_t step = 0; step < count; ++step) {
    const int64_t i = (index + step) % count;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (bad_.count(i) != 0) {
        continue;
      }
    }
    const auto& file = files_[static_cast<size_t>(i)];
    std::string problem;
    try {
      decode(file, draw, out);
      return i;
    } catch (const std::runtime_error& error) {
      problem = error.what();
    } catch (const std::bad_alloc&) {
      // Sizes are bounded before decoding; this is a machine short of
      // memory for a file within them.
      problem = file + ": not enough memory to decode it";
    }
    if (!options_.skip_bad_files()) {
      throw std::runtime_error(
          problem + " (set data.skip_bad_files = true to skip such files)");
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (bad_.insert(i).second) {
      ++skipped_;
    }
  }
  throw std::runtime_error("no readable file left in the folder");
}

}  // namespace detail
}  // namespace diffstride
