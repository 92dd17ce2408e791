#pragma once

// Result files written whole or not at all, and binary files whose integrity
// is checked when they are read back (docs/training.md, "Run folder").
// Internal to the training library.

#include <filesystem>
#include <string>

namespace diffstride {
namespace detail {

/// Replaces `path` with `bytes`: written to a new temporary file beside it
/// (created exclusively, never through a link), every write checked,
/// flushed, then renamed over `path`. On any failure (a full disk, say) the
/// temporary file is removed, `path` is left as it was, and the error names
/// the file. A `path` that exists but is not a regular file (a symbolic
/// link, FIFO, device or folder) is refused: nothing is written through it
/// or put in its place.
void replace_file(const std::filesystem::path& path, const std::string& bytes);

/// Whether `path` is a regular file (not a link) whose first or second line
/// starts with `mark`.
bool carries_mark(const std::filesystem::path& path, const std::string& mark);

/// Checks that `path` is absent or carries `mark` (the text every version of
/// this file the tool writes starts its first or second line with);
/// otherwise the error names the file and says that `writer` did not write
/// it.
void check_owned_file(const std::filesystem::path& path,
                      const std::string& mark,
                      const std::string& writer);

/// check_owned_file, then replace_file: for a file a person or another
/// program may have put there.
void replace_owned_file(const std::filesystem::path& path,
                        const std::string& bytes,
                        const std::string& mark,
                        const std::string& writer);

/// Creates `path` empty if nothing (not even a dangling link) is there and
/// returns a descriptor (close-on-exec) writing to it; returns -1, creating
/// nothing, if something is. Other failures are errors naming the file.
int create_new_file(const std::filesystem::path& path);

/// Writes all of `bytes` to `fd`; false on any failure (errno says why).
bool write_fully(int fd, const std::string& bytes);

/// As replace_file, for a path that must not exist: the file appears whole
/// (a temporary file linked to `path`) or not at all, and if anything is
/// already at `path` the error names it and nothing is written.
void create_file(const std::filesystem::path& path, const std::string& bytes);

/// A descriptor (close-on-exec) appending to `path`, created if absent; an
/// error naming the file if it exists and is not a regular file (a FIFO
/// would block, a link would be written through).
int open_for_append(const std::filesystem::path& path);

/// The magic string that starts every file with_integrity_header makes.
std::string integrity_magic();

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
