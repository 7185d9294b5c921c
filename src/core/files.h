#pragma once
// Small filesystem helpers. Every file bidora writes goes through write_file_atomic, so a
// crash or a full disk never leaves a half-written output in place of a good one.
#include <string>
#include <string_view>

namespace bidora {

std::string read_file(const std::string& path);  // throws Error naming the path

// Writes to "<path>.tmp.<pid>", fsyncs, then renames over path. On failure the temporary file
// is removed, any previous file at path is untouched, and Error names the path and the reason.
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace bidora
