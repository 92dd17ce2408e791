#pragma once

// What a path that is not a regular file is, in words for error messages
// ("a FIFO", "a dangling symbolic link"). Internal to the libraries.

#include <filesystem>
#include <string>

namespace diffstride {
namespace detail {

/// The kind of `type` ("a folder", "a FIFO", "a device", ...); empty for a
/// regular file or nothing at all.
inline std::string file_kind(std::filesystem::file_type type) {
  using std::filesystem::file_type;
  switch (type) {
    case file_type::not_found:
    case file_type::none:
    case file_type::regular:
      return "";
    case file_type::symlink:
      return "a symbolic link";
    case file_type::directory:
      return "a folder";
    case file_type::fifo:
      return "a FIFO";
    case file_type::block:
    case file_type::character:
      return "a device";
    case file_type::socket:
      return "a socket";
    default:
      return "not a regular file";
  }
}

}  // namespace detail
}  // namespace diffstride
