#include <diffstride/experiments/sweep.h>

#include <diffstride/train/config.h>
#include <diffstride/train/run_folder.h>

#include "train/checked_file.h"
#include "train/csv.h"

#include <c10/util/Exception.h>
#include <toml++/toml.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <thread>

namespace diffstride {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSpecFile = "sweep.toml";
constexpr const char* kLockFile = ".lock";
constexpr const char* kRunsFolder = "runs";
constexpr const char* kLogsFolder = "logs";

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, separator)) {
    parts.push_back(part);
  }
  if (!text.empty() && text.back() == separator) {
    parts.emplace_back();
  }
  return parts;
}

// A value as part of a folder name: letters, digits and . = _ - kept, any
// other character (the commas of a list, say) made a '-'.
std::string name_part(const std::string& value) {
  std::string out = value;
  for (auto& c : out) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' &&
        c != '-') {
      c = '-';
    }
  }
  return out;
}

std::string spec_toml(const SweepSpec& spec) {
  toml::table root;
  root.insert("config", spec.config);
  toml::array overrides;
  for (const auto& o : spec.overrides) {
    overrides.push_back(o);
  }
  root.insert("set", overrides);
  toml::array axes;
  for (const auto& axis : spec.axes) {
    toml::array values;
    for (const auto& v : axis.values) {
      values.push_back(v);
    }
    axes.push_back(toml::table{{"key", axis.key}, {"values", values}});
  }
  root.insert("axis", axes);
  std::ostringstream out;
  out << "# The sweep in this folder: `diffstride sweep` with the same\n"
         "# arguments continues it.\n"
      << root << "\n";
  return out.str();
}

std::string manifest_csv(const SweepSpec& spec,
                         const std::vector<SweepRun>& runs) {
  std::ostringstream out;
  out << "run";
  for (const auto& axis : spec.axes) {
    out << "," << detail::csv_field(axis.key);
  }
  out << "\n";
  for (const auto& run : runs) {
    out << detail::csv_field((fs::path(kRunsFolder) / run.name).string());
    for (const auto& o : run.overrides) {
      out << "," << detail::csv_field(o.substr(o.find('=') + 1));
    }
    out << "\n";
  }
  return out.str();
}

// Held (by this process and the runs it starts, which inherit it) while a
// sweep runs in the folder, so that a restarted sweep never runs a run
// beside a copy of itself still stopping.
void lock_sweep_folder(const fs::path& folder, std::ostream* progress) {
  const auto path = folder / kLockFile;
  const int fd = detail::open_for_append(path);
  ::fcntl(fd, F_SETFD, 0);  // inherited by the runs
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
    return;
  }
  if (progress != nullptr) {
    *progress << "[sweep] waiting for the runs of an earlier sweep in "
              << folder.string() << " to stop" << std::endl;
  }
  if (::flock(fd, LOCK_EX) != 0) {
    const int error = errno;
    ::close(fd);
    TORCH_CHECK(
        false, "cannot lock ", path.string(), ": ", std::strerror(error));
  }
}

// `program` as execv wants it: a path, searched on PATH when it has no '/'.
std::string resolve_program(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    return program;
  }
  const char* path = std::getenv("PATH");
  for (const auto& dir : split(path ? path : "", ':')) {
    const auto candidate = fs::path(dir.empty() ? "." : dir) / program;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate.string();
    }
  }
  TORCH_CHECK(false, "--launch: ", program, " is not on PATH");
}

// Starts argv with its output appended to `log`. The child gets SIGTERM
// when this process dies (it then checkpoints and stops, as on Ctrl-C).
// With `block_stop_signals` it starts with SIGINT and SIGTERM blocked, for
// the tool itself, which unblocks them once it handles them (a launcher
// such as torchrun would never unblock them).
pid_t start_process(const std::vector<std::string>& argv,
                    const fs::path& log,
                    bool block_stop_signals) {
  const std::string program = resolve_program(argv[0]);
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  const int out = detail::open_for_append(log);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec. SIGINT and SIGTERM
    // stay blocked (pending, not lost) until the run has its handlers: a
    // signal forwarded while it starts then still checkpoints and stops it.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (block_stop_signals) {
      ::sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
    }
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) {
      ::_exit(1);
    }
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::execv(program.c_str(), args.data());
    const char message[] = "diffstride sweep: cannot start the run\n";
    [[maybe_unused]] const auto written =
        ::write(STDERR_FILENO, message, sizeof(message) - 1);
    ::_exit(127);
  }
  ::close(out);
  TORCH_CHECK(
      pid > 0, "cannot start a run: fork failed: ", std::strerror(errno));
  return pid;
}

std::string minutes(double seconds) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(seconds < 600 ? 1 : 0)
      << seconds / 60.0 << " min";
  return out.str();
}

}  // namespace

SweepAxis parse_sweep_axis(const std::string& text) {
  const auto equals = text.find('=');
  TORCH_CHECK(
      equals != std::string::npos && equals > 0 && equals + 1 < text.size(),
      "--axis: expected section.key=value1,value2,... (or values "
      "separated by ':' when they hold commas), got '",
      text,
      "'");
  SweepAxis axis;
  axis.key = text.substr(0, equals);
  const auto values = text.substr(equals + 1);
  axis.values =
      split(values, values.find(':') != std::string::npos ? ':' : ',');
  for (const auto& v : axis.values) {
    TORCH_CHECK(!v.empty(), "--axis ", text, ": an empty value");
  }
  TORCH_CHECK(axis.key != "train.out",
              "--axis: train.out is set by the sweep (runs/NAME)");
  return axis;
}

std::vector<SweepRun> sweep_runs(const std::vector<SweepAxis>& axes) {
  size_t count = 1;
  for (const auto& axis : axes) {
    count *= axis.values.size();
    TORCH_CHECK(count <= static_cast<size_t>(kMaxSweepRuns),
                "sweep: the axes make more than ",
                kMaxSweepRuns,
                " runs (--axis ",
                axis.key,
                " brings them to ",
                count,
                "); split the sweep");
  }
  const int width = static_cast<int>(std::to_string(count - 1).size());
  std::vector<SweepRun> runs;
  for (size_t index = 0; index < count; ++index) {
    std::ostringstream name;
    name << std::setw(width) << std::setfill('0') << index;
    SweepRun run;
    size_t rest = index;
    std::vector<std::string> overrides(axes.size());
    // The last axis varies fastest.
    for (size_t a = axes.size(); a-- > 0;) {
      const auto& value = axes[a].values[rest % axes[a].values.size()];
      rest /= axes[a].values.size();
      overrides[a] = axes[a].key + "=" + value;
    }
    for (size_t a = 0; a < axes.size(); ++a) {
      const auto& key = axes[a].key;
      name << "_" << key.substr(key.rfind('.') + 1) << "="
           << name_part(overrides[a].substr(key.size() + 1));
    }
    run.name = name.str();
    run.overrides = std::move(overrides);
    runs.push_back(std::move(run));
  }
  return runs;
}

// The sweep's arguments and every run's config, checked before any run
// starts: a bad key or value is an error now, not hours in. Returns the
// runs.
std::vector<SweepRun> checked_runs(const SweepSpec& spec,
                                   const SweepOptions& options) {
  TORCH_CHECK(!options.out.empty(), "sweep: expected an output folder (--out)");
  TORCH_CHECK(options.parallel >= 1 && options.parallel <= max_threads(),
              "--parallel: expected 1 to ",
              max_threads(),
              " runs at once (",
              kThreadsPerCore,
              " x this machine's cores), got ",
              options.parallel);
  for (const auto& axis : spec.axes) {
    TORCH_CHECK(options.device.empty() || axis.key != "train.device",
                "--device ",
                options.device,
                " and --axis train.device disagree: give the device in one "
                "place");
  }
  for (const auto& o : spec.overrides) {
    TORCH_CHECK(options.device.empty() || o.rfind("train.device=", 0) != 0,
                "--device ",
                options.device,
                " and --set ",
                o,
                " disagree: give the device in one place");
  }
  std::map<std::string, int> seen;
  for (const auto& axis : spec.axes) {
    TORCH_CHECK(++seen[axis.key] == 1,
                "--axis ",
                axis.key,
                " is given twice: put all its values in one --axis");
  }
  const auto runs = sweep_runs(spec.axes);
  for (const auto& run : runs) {
    auto overrides = spec.overrides;
    overrides.insert(
        overrides.end(), run.overrides.begin(), run.overrides.end());
    try {
      load_train_config(spec.config, overrides);
    } catch (const c10::Error& error) {
      TORCH_CHECK(
          false, "sweep run ", run.name, ": ", error.what_without_backtrace());
    }
  }
  return runs;
}

// The sweep folder `options.out`, new, empty or this sweep's own (its
// sweep.toml the same), locked for this process and its runs.
void open_sweep_folder(const SweepSpec& spec, const SweepOptions& options) {
  const fs::path out = options.out;
  TORCH_CHECK(!fs::exists(out) ||
                  (fs::is_directory(out) &&
                   (fs::is_empty(out) ||
                    fs::is_regular_file(fs::symlink_status(out / kSpecFile)))),
              out.string(),
              ": not an empty folder or a sweep's (no ",
              kSpecFile,
              "): a sweep needs a new folder, an empty one, or its own");
  fs::create_directories(out / kRunsFolder);
  fs::create_directories(out / kLogsFolder);
  const auto spec_text = spec_toml(spec);
  if (fs::exists(out / kSpecFile)) {
    std::ifstream in(out / kSpecFile, std::ios::binary);
    const std::string existing((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    TORCH_CHECK(existing == spec_text,
                out.string(),
                " holds another sweep (its ",
                kSpecFile,
                " differs from these arguments): continue it with its own "
                "arguments or choose another --out");
  }
  lock_sweep_folder(out, options.progress);
}

namespace {

// The runs of one sweep as child processes, `options.parallel` at once: a
// run that finished earlier is skipped, one that started is resumed. The
// sweep's progress goes to sweep.log and `options.progress`.
class SweepRunner {
 public:
  SweepRunner(const SweepSpec& spec,
              const SweepOptions& options,
              std::vector<SweepRun> runs);
  ~SweepRunner() {
    ::close(log_);
  }
  SweepRunner(const SweepRunner&) = delete;
  SweepRunner& operator=(const SweepRunner&) = delete;

  // Runs them all, or until interrupted; returns the number that failed.
  int64_t run();

 private:
  struct Running {
    size_t index;
    std::chrono::steady_clock::time_point start;
  };

  void say(const std::string& line) const;
  std::string folder_of(const SweepRun& run) const {
    return (out_ / kRunsFolder / run.name).string();
  }
  bool interrupted() const {
    return options_.interrupt != nullptr && options_.interrupt->load();
  }
  void start(size_t index);
  std::vector<std::string> run_arguments(const SweepRun& run,
                                         bool resume) const;
  void stop_all_once();
  void reap(pid_t pid, int status);

  const SweepSpec& spec_;
  const SweepOptions& options_;
  const fs::path out_;
  const std::vector<SweepRun> runs_;
  const int log_;
  std::vector<size_t> pending_;
  int64_t threads_per_run_;
  std::map<pid_t, Running> running_;
  size_t next_ = 0, done_ = 0;
  int64_t failed_ = 0;
  double seconds_sum_ = 0;
  bool stop_forwarded_ = false;
};

SweepRunner::SweepRunner(const SweepSpec& spec,
                         const SweepOptions& options,
                         std::vector<SweepRun> runs)
    : spec_(spec),
      options_(options),
      out_(options.out),
      runs_(std::move(runs)),
      log_(detail::open_for_append(out_ / "sweep.log")),
      threads_per_run_(
          std::max<int64_t>(1, options.threads / options.parallel)) {
  for (size_t i = 0; i < runs_.size(); ++i) {
    if (RunFolder::state_of(folder_of(runs_[i])) == RunState::kFinished) {
      say(runs_[i].name + ": finished earlier, skipped");
    } else {
      pending_.push_back(i);
    }
  }
  say(std::to_string(runs_.size()) + " runs, " +
      std::to_string(runs_.size() - pending_.size()) + " finished, " +
      std::to_string(pending_.size()) + " to run, " +
      std::to_string(options.parallel) + " at once with " +
      std::to_string(threads_per_run_) + " thread(s) each");
}

void SweepRunner::say(const std::string& line) const {
  const auto text = line + "\n";
  [[maybe_unused]] const auto written = ::write(log_, text.data(), text.size());
  if (options_.progress != nullptr) {
    *options_.progress << "[sweep] " << line << std::endl;
  }
}

int64_t SweepRunner::run() {
  // Interrupted, no run starts; the loop ends when the running ones stop.
  while ((!interrupted() && next_ < pending_.size()) || !running_.empty()) {
    while (!interrupted() && next_ < pending_.size() &&
           static_cast<int64_t>(running_.size()) < options_.parallel) {
      start(pending_[next_++]);
    }
    if (interrupted()) {
      stop_all_once();
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    reap(pid, status);
  }
  if (interrupted()) {
    say("interrupted: " + std::to_string(pending_.size() - done_) +
        " run(s) left; run the same command again to continue");
  } else {
    say("done: " + std::to_string(done_) + " run(s) finished here, " +
        std::to_string(failed_) + " failed");
  }
  return failed_;
}

void SweepRunner::start(size_t index) {
  const auto& run = runs_[index];
  const bool resume = RunFolder::state_of(folder_of(run)) == RunState::kStarted;
  const auto log = out_ / kLogsFolder / (run.name + ".log");
  const pid_t pid =
      start_process(run_arguments(run, resume), log, options_.launch.empty());
  running_[pid] = {index, std::chrono::steady_clock::now()};
  say(run.name + ": " + (resume ? "resumed" : "started") +
      " (log: " + log.string() + ")");
}

// The command line of one run: the launcher, if any, then the tool.
std::vector<std::string> SweepRunner::run_arguments(const SweepRun& run,
                                                    bool resume) const {
  std::vector<std::string> argv = options_.launch;
  argv.insert(argv.end(),
              {options_.executable,
               "--threads",
               std::to_string(threads_per_run_),
               "train"});
  if (resume) {
    argv.insert(argv.end(), {"--resume", folder_of(run)});
  } else {
    if (!spec_.config.empty()) {
      argv.insert(argv.end(), {"--config", spec_.config});
    }
    for (const auto* list : {&spec_.overrides, &run.overrides}) {
      for (const auto& o : *list) {
        argv.insert(argv.end(), {"--set", o});
      }
    }
    argv.insert(argv.end(), {"--out", folder_of(run)});
  }
  if (!options_.device.empty()) {
    argv.insert(argv.end(), {"--device", options_.device});
  }
  return argv;
}

// Every run checkpoints and stops, as on Ctrl-C.
void SweepRunner::stop_all_once() {
  if (stop_forwarded_) {
    return;
  }
  for (const auto& [pid, r] : running_) {
    ::kill(pid, SIGINT);
  }
  stop_forwarded_ = true;
}

// A child that ended: finished, stopped (exit 0 before its final model) or
// failed.
void SweepRunner::reap(pid_t pid, int status) {
  const auto found = running_.find(pid);
  if (found == running_.end()) {
    return;
  }
  const auto& run = runs_[found->second.index];
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                    found->second.start)
          .count();
  running_.erase(found);
  if (RunFolder::state_of(folder_of(run)) == RunState::kFinished) {
    ++done_;
    seconds_sum_ += seconds;
    const size_t left = pending_.size() - done_;
    const double eta = seconds_sum_ / static_cast<double>(done_) *
                       static_cast<double>(left) /
                       static_cast<double>(options_.parallel);
    say(run.name + ": finished in " + minutes(seconds) + "; " +
        std::to_string(done_) + " of " + std::to_string(pending_.size()) +
        " done, " + std::to_string(left) + " to go, ETA " + minutes(eta));
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    say(run.name + ": stopped (resume by running the sweep again)");
  } else {
    ++failed_;
    std::ostringstream why;
    if (WIFEXITED(status)) {
      why << "exit status " << WEXITSTATUS(status);
    } else {
      why << "signal " << WTERMSIG(status);
    }
    say(run.name + ": FAILED (" + why.str() + "; see logs/" + run.name +
        ".log)");
  }
}

}  // namespace

int64_t execute_sweep(const SweepSpec& spec, const SweepOptions& options) {
  auto runs = checked_runs(spec, options);
  open_sweep_folder(spec, options);
  const fs::path out = options.out;
  detail::replace_file(out / kSpecFile, spec_toml(spec));
  detail::replace_file(out / kSweepManifestFile, manifest_csv(spec, runs));
  SweepRunner runner(spec, options, std::move(runs));
  return runner.run();
}

}  // namespace diffstride
