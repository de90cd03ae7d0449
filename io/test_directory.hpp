// TestDirectory: a fresh directory for tests and benchmarks that need real files with O_DIRECT.
//
// For unit tests and benchmarks only; engine code never includes this header. The directory
// must be on the project's disk, where O_DIRECT works and writes are real, never on a RAM file
// system: /tmp may be tmpfs, which keeps everything in memory and, before Linux 6.6, refuses
// O_DIRECT. So the candidates are $TMPDIR, then the directory holding the running executable
// (inside the build directory); the first one that is not tmpfs and passes direct_io_probe()
// wins. If none qualifies, the constructor prints why and exits with status 1 rather than test
// something other than the real thing.
//
// Invariants: the directory is created with mkdtemp (unique per instance), and the destructor
// removes it with every regular file inside it (tests that fail midway leave nothing behind).
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "io/file_storage.hpp"

namespace tally::io {

class TestDirectory {
 public:
  TestDirectory() {
    std::string executable_directory = ".";
    char executable[4096] = {};
    const ssize_t size = readlink("/proc/self/exe", executable, sizeof(executable) - 1);
    if (size > 0) {
      executable_directory.assign(executable, static_cast<std::size_t>(size));
      executable_directory.resize(executable_directory.rfind('/'));
    }
    const char* environment = std::getenv("TMPDIR");
    const std::string candidates[2] = {environment != nullptr ? environment : "",
                                       executable_directory};
    for (const std::string& candidate : candidates) {
      if (candidate.empty()) continue;
      const DirectIoProbe probe = direct_io_probe(candidate.c_str());
      if (probe.tmpfs || probe.status != DirectIoStatus::supported) {
        std::fprintf(stderr, "TestDirectory: skipping %s (%s, O_DIRECT %s)\n", candidate.c_str(),
                     probe.file_system,
                     probe.status == DirectIoStatus::supported ? "works" : "does not work");
        continue;
      }
      std::string pattern = candidate + "/tally-io-test-XXXXXX";
      if (mkdtemp(pattern.data()) != nullptr) {
        path_ = pattern;
        return;
      }
    }
    std::fprintf(stderr, "TestDirectory: no directory off tmpfs with working O_DIRECT; "
                         "set TMPDIR to one on ext4 or xfs\n");
    std::exit(1);
  }

  TestDirectory(const TestDirectory&) = delete;
  TestDirectory& operator=(const TestDirectory&) = delete;

  ~TestDirectory() {
    if (DIR* directory = opendir(path_.c_str())) {
      while (const dirent* entry = readdir(directory)) {
        if (std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0) {
          continue;
        }
        unlink((path_ + "/" + entry->d_name).c_str());
      }
      closedir(directory);
    }
    rmdir(path_.c_str());
  }

  const std::string& path() const { return path_; }
  std::string file(const char* name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace tally::io
