#pragma once

// How the tool's commands meet SIGINT (Ctrl-C) and SIGTERM
// (docs/training.md, "Stopping").

#include <atomic>

namespace diffstride_cli {

/// Makes SIGINT and SIGTERM set the returned flag instead of killing the
/// process: training and sweeps checkpoint and stop on it. With
/// `second_signal_exits`, a second signal ends the process at once.
const std::atomic<bool>* stop_on_signals(bool second_signal_exits = false);

/// Makes SIGINT and SIGTERM end the process at once with status 128 + the
/// signal, after one line on stderr: for commands with nothing to save
/// (eval, data, bench). Also undoes SIG_IGN, which a shell gives the
/// programs it starts in the background.
void exit_on_signals();

}  // namespace diffstride_cli
