#pragma once
// Small filesystem helpers. Every file bidora writes goes through write_file_atomic, so a
// crash or a full disk never leaves a half-written output in place of a good one.
#include <functional>
#include <string>
#include <string_view>

namespace bidora {

std::string read_file(const std::string& path);  // throws Error naming the path

// Writes to "<path>.tmp.<pid>", fsyncs, then renames over path. On failure the temporary file
// is removed, any previous file at path is untouched, and Error names the path and the reason.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Appends bytes to path (created if missing) and fsyncs: for logs that grow line by line
// (metrics.jsonl), where rewriting the whole file at every entry would be quadratic.
void append_file_synced(const std::string& path, std::string_view bytes);

// Builds a whole directory atomically: fill() writes into "<dir>.tmp.<pid>", which then takes
// the place of dir (a previous dir is moved aside and deleted only once the new one is in
// place). If fill or a rename fails, the temporary directory is removed, dir is left as it was
// and the Error is rethrown. The parent directory is fsynced so the rename survives a crash.
void replace_directory(const std::string& dir, const std::function<void(const std::string& tmp_dir)>& fill);

// fsync of a directory (makes renames and new entries in it durable). Errors are ignored where
// the filesystem does not support it.
void sync_directory(const std::string& dir);

}  // namespace bidora
