#include "signals.h"

#include <pthread.h>
#include <unistd.h>

#include <csignal>

namespace diffstride_cli {

namespace {

std::atomic<bool> interrupted{false};
std::atomic<int> signals_received{0};
std::atomic<bool> exit_on_second{false};

// Only async-signal-safe calls here.
extern "C" void on_stop_signal(int signal) {
  if (++signals_received >= 2 && exit_on_second.load()) {
    ::_exit(128 + signal);
  }
  interrupted = true;
}

extern "C" void on_exit_signal(int signal) {
  const char message[] = "\ninterrupted\n";
  [[maybe_unused]] const auto written =
      ::write(STDERR_FILENO, message, sizeof(message) - 1);
  ::_exit(128 + signal);
}

void handle(void (*handler)(int)) {
  struct sigaction action {};
  action.sa_handler = handler;
  // Interrupted system calls (a wait on a lock, a read) resume rather than
  // fail: the flag, not an error, stops the work.
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  // A parent (a sweep) may have started this process with them blocked, so
  // that one sent before now waits for the handler: it runs here.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  ::pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
}

}  // namespace

const std::atomic<bool>* stop_on_signals(bool second_signal_exits) {
  exit_on_second = second_signal_exits;
  handle(on_stop_signal);
  return &interrupted;
}

void exit_on_signals() {
  handle(on_exit_signal);
}

}  // namespace diffstride_cli
