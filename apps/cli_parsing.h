#pragma once

// Parsing of the command-line tool's size and stride arguments, with errors
// that say what is accepted.

#include <diffstride/nn/stride_pair.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace diffstride_cli {

/// Rejects an empty value (`--resume ""`), which would otherwise read as an
/// option not given.
CLI::Validator not_empty();

/// Adds --model (resnet18 or resnet56, default shown) to `command`.
void add_model_option(CLI::App* command, std::string& model);

/// "CxHxW" (e.g. 3x32x32) into its three positive sizes; throws
/// CLI::ValidationError naming `option` otherwise, also for an example of
/// more than kMaxInputValues values.
std::array<int64_t, 3> parse_input_size(const std::string& text,
                                        const std::string& option);

/// The most values one example of --input may have, and a batch of them
/// (2^28 float32 values: 1 GiB).
constexpr int64_t kMaxInputValues = int64_t{1} << 28;

/// Throws CLI::ValidationError naming `option` if `batch` examples of `size`
/// hold more than kMaxInputValues values.
void check_batch_values(int64_t batch,
                        const std::array<int64_t, 3>& size,
                        const std::string& option);

/// --threads: 1 to max_threads(), with a message that names the cores.
CLI::Validator thread_count();

/// "1,1,2x3,2" into one stride per stage: a number, or HxW for a pair;
/// throws CLI::ValidationError naming `option` otherwise.
std::vector<diffstride::StridePair> parse_stage_strides(
    const std::string& text, const std::string& option);

}  // namespace diffstride_cli
