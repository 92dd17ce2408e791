#pragma once

// Result files written whole or not at all, and binary files whose integrity
// is checked when they are read back (docs/training.md, "Run folder").
// Internal to the training library.

#include <filesystem>
#include <string>

namespace diffstride {
namespace detail {

/// Replaces `path` with `bytes`: written to `path.tmp`, every write checked,
/// flushed, then renamed over `path`. On any failure (a full disk, say) the
/// temporary file is removed, `path` is left as it was, and the error names
/// the file.
void replace_file(const std::filesystem::path& path, const std::string& bytes);

/// `content` behind a header that lets `verified_content` check it: a magic
/// string, the content's size and its CRC-32.
std::string with_integrity_header(const std::string& content);

/// The content of `path`, a file written as `with_integrity_header(...)`,
/// after checking that it is a regular file, that the header is there and
/// that size and CRC-32 match. Any mismatch is an error naming the file and
/// `what` it should be ("checkpoint", "model").
std::string verified_content(const std::filesystem::path& path,
                             const char* what);

}  // namespace detail
}  // namespace diffstride
