// Death tests: run a piece of code in a forked child and report how the child ended.
//
// For unit tests only (`*_test.cpp`); engine code never includes this header. It is the one
// file in src/base that uses POSIX directly, because proving that an assertion traps or that
// fatal() exits needs a process to die in.
//
// Invariants:
// - The child never returns into the test runner: it runs the body, then _exit(0), so no
//   destructor, atexit handler or stdio buffer of the parent runs twice.
// - The child's stderr is captured through a pipe and returned whole; its stdout is untouched.
// - The child dies of the signals it raises (any handler the runner installed is reset), writes
//   no core file (a trap is expected), and is killed by SIGALRM after
//   `child_seconds_max`, so a body that hangs fails its test instead of hanging the suite.
// - Both stdio streams are flushed before fork(), so buffered parent output is not duplicated.
#pragma once

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace tally::base::death_test {

inline constexpr unsigned child_seconds_max = 30;

struct ChildResult {
  bool exited = false;    // The child called exit (or returned from the body): see exit_code.
  int exit_code = -1;
  bool signaled = false;  // The child was killed by a signal: see signal.
  int signal = 0;
  std::string stderr_text;

  bool trapped() const { return signaled && (signal == SIGILL || signal == SIGTRAP); }
  bool stderr_contains(std::string_view text) const {
    return stderr_text.find(text) != std::string::npos;
  }
};

template <typename Body>
ChildResult run_in_child(Body&& body) {
  int pipe_ends[2] = {-1, -1};
  if (pipe(pipe_ends) != 0) {
    std::perror("death_test: pipe");
    std::_Exit(1);
  }
  std::fflush(stdout);
  std::fflush(stderr);

  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("death_test: fork");
    std::_Exit(1);
  }
  if (pid == 0) {
    close(pipe_ends[0]);
    dup2(pipe_ends[1], STDERR_FILENO);
    close(pipe_ends[1]);
    // The test runner may catch fatal signals to report a crash; the child must die of them.
    for (const int fatal_signal : {SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS, SIGFPE}) {
      std::signal(fatal_signal, SIG_DFL);
    }
    const struct rlimit core_limit = {0, 0};
    setrlimit(RLIMIT_CORE, &core_limit);
    alarm(child_seconds_max);
    std::forward<Body>(body)();
    _exit(0);
  }

  close(pipe_ends[1]);
  ChildResult result;
  char buffer[4096];
  for (;;) {
    const ssize_t size = read(pipe_ends[0], buffer, sizeof(buffer));
    if (size > 0) {
      result.stderr_text.append(buffer, static_cast<std::size_t>(size));
    } else if (size == 0 || errno != EINTR) {
      break;
    }
  }
  close(pipe_ends[0]);

  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      std::perror("death_test: waitpid");
      std::_Exit(1);
    }
  }
  if (WIFEXITED(status)) {
    result.exited = true;
    result.exit_code = WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) {
    result.signaled = true;
    result.signal = WTERMSIG(status);
  }
  return result;
}

}  // namespace tally::base::death_test
