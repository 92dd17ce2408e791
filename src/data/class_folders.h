#pragma once

// What image and audio folders share (docs/data.md, "Image folders"): the
// layout DIR/train/CLASS/FILE and DIR/val (or test)/CLASS/FILE, its index of
// files and labels, and a reader that skips bad files. Internal to the
// training library.

#include <diffstride/data/dataset.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace diffstride {
namespace detail {

/// The files of one split, class by class (classes: train/'s subfolders,
/// sorted; files: sorted by name within each class).
struct ClassFolders {
  std::vector<std::string> classes;
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  /// Files whose extension is none of `extensions` (skipped; an error
  /// naming the first unless skip_bad_files).
  int64_t skipped = 0;
};

/// Indexes split `split` ("train"; "test": val/ or test/) of `dir`. `kind`
/// names the files in messages ("images"); `extensions` are lower case,
/// with the dot.
ClassFolders index_class_folders(const std::string& dir,
                                 const std::string& split,
                                 const std::vector<std::string>& extensions,
                                 const std::string& kind,
                                 bool skip_bad_files);

/// The dataset of an index read by `reader`.
Dataset folder_dataset(const std::string& name,
                       const ClassFolders& index,
                       std::shared_ptr<const ExampleReader> reader);

/// A reader of indexed files: decode() makes one example of one file, or
/// throws std::runtime_error naming it; a bad file stops the run with that
/// error, or with skip_bad_files is remembered, counted and replaced by the
/// next readable file of the folder.
class FolderReader : public ExampleReader {
 public:
  /// Reads the files of `index` as `options` say (skip_bad_files,
  /// workers; the rest is the derived reader's).
  FolderReader(const ClassFolders& index, FolderOptions options);

  int64_t read(int64_t index, uint64_t draw, float* out) const override;
  int64_t workers() const override {
    return options_.workers();
  }
  int64_t skipped_files() const override {
    return skipped_.load();
  }

 protected:
  virtual void decode(const std::string& path,
                      uint64_t draw,
                      float* out) const = 0;

  const FolderOptions options_;

 private:
  std::vector<std::string> files_;
  mutable std::atomic<int64_t> skipped_;
  mutable std::mutex mutex_;
  mutable std::set<int64_t> bad_;
};

}  // namespace detail
}  // namespace diffstride
