#pragma once

// The fuzz input written to a file, for readers that take a path: one file
// per process, under the system's temporary folder.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace diffstride_fuzz {

/// A folder of this process's own, created once and removed at exit.
struct ScratchFolder {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("diffstride_fuzz_" + std::to_string(::getpid()));
  ScratchFolder() {
    std::filesystem::create_directories(path);
  }
  ~ScratchFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

inline const std::filesystem::path& scratch_folder() {
  static const ScratchFolder folder;
  return folder.path;
}

/// Writes the input to `name` in the scratch folder and returns its path.
inline std::string write_input(const uint8_t* data,
                               size_t size,
                               const std::string& name) {
  const auto path = scratch_folder() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data),
            static_cast<std::streamsize>(size));
  return path.string();
}

}  // namespace diffstride_fuzz
