// The training config parser on arbitrary text.
#include <diffstride/train/config.h>

#include <c10/util/Exception.h>

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto config = diffstride::parse_train_config(text, {}, "fuzz.toml");
    // What is accepted writes back and reads again to the same.
    const auto again = diffstride::parse_train_config(
        diffstride::to_toml(config), {}, "again");
    if (diffstride::to_toml(again) != diffstride::to_toml(config)) {
      __builtin_trap();
    }
  } catch (const c10::Error&) {
  }
  return 0;
}
