#include <diffstride/experiments/report.h>

#include <diffstride/experiments/sweep.h>
#include <diffstride/train/run_folder.h>

#include "data/regular_file.h"
#include "train/checked_file.h"
#include "train/csv.h"

#include <c10/util/Exception.h>
#include <toml++/toml.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

namespace diffstride {

namespace fs = std::filesystem;

namespace {

// Config keys that differ between runs without making them different
// experiments (where and how a run ran), and the seed, which the table
// averages over.
const std::set<std::string> kNotASetting = {"train.out",
                                            "train.threads",
                                            "train.device",
                                            "data.data_dir",
                                            "train.seed"};

// Carried by every file the report writes, so that the next report replaces
// them and nothing else (a CSV carries its header instead).
const std::string kReportMark = "<!-- written by diffstride report -->";
// The strides plot shows the first layers only: a panel each.
constexpr int kMostStridePanels = 16;

const std::string kCsvHeader =
    "run,finished,pooling,setting,seed,epochs,test_accuracy,test_loss,"
    "multiply_adds,learned_strides";

// ---------------------------------------------------------------------------
// Step 1: the runs.

struct Run {
  fs::path folder;
  std::map<std::string, std::string> config;  // key -> value as shown
  std::vector<std::string> columns;           // of metrics.csv
  std::vector<std::vector<double>> rows;      // one per epoch; NaN: none
  bool finished = false;
  int layers = 0;  // DiffStride layers: columns stride0_h, stride1_h, ...

  // The position of column `name` in metrics.csv (columns.size() when
  // absent).
  size_t column_index(const std::string& name) const {
    return static_cast<size_t>(std::find(columns.begin(), columns.end(), name) -
                               columns.begin());
  }
  bool has_column(const std::string& name) const {
    return column_index(name) < columns.size();
  }
  // The last epoch's value of column `name` (NaN when absent or no epoch).
  double last(const std::string& name) const {
    const auto i = column_index(name);
    return i < columns.size() && !rows.empty() ? rows.back()[i] : std::nan("");
  }
  std::string value(const std::string& key) const {
    const auto found = config.find(key);
    return found == config.end() ? std::string() : found->second;
  }
};

std::string number(double value) {
  std::ostringstream out;
  out << std::setprecision(6) << value;
  return out.str();
}

// A config value as people write it: lists joined by ',', a stride pair h x w
// as "h" when both are equal, else "hxw".
std::string shown(const toml::node& node) {
  if (const auto* array = node.as_array()) {
    std::string out;
    for (const auto& element : *array) {
      if (!out.empty()) {
        out += ",";
      }
      const auto* pair = element.as_array();
      if (pair != nullptr && pair->size() == 2) {
        const auto h = shown(*pair->get(0)), w = shown(*pair->get(1));
        out += h == w ? h : h + "x" + w;
      } else {
        out += shown(element);
      }
    }
    return out;
  }
  if (const auto* text = node.as_string()) {
    return text->get();
  }
  if (const auto* flag = node.as_boolean()) {
    return flag->get() ? "true" : "false";
  }
  if (const auto* integer = node.as_integer()) {
    return std::to_string(integer->get());
  }
  if (const auto* real = node.as_floating_point()) {
    return number(real->get());
  }
  return "?";
}

// A run's file, read whole if it is a regular file of at most 64 MiB (a
// FIFO or a device there would block or never end).
std::string run_file(const fs::path& path) {
  try {
    return detail::read_regular_file(
        path.string(), int64_t{64} << 20, "a run's file of 64 MiB");
  } catch (const std::runtime_error& error) {
    TORCH_CHECK(false, "report: ", error.what());
  }
}

std::map<std::string, std::string> read_config(const fs::path& path,
                                               const fs::path& folder) {
  TORCH_CHECK(fs::exists(fs::symlink_status(path)),
              folder.string(),
              " is not a run folder (no config.toml)");
  toml::table table;
  try {
    table = toml::parse(run_file(path), path.string());
  } catch (const toml::parse_error& error) {
    TORCH_CHECK(false, path.string(), ": ", error.description());
  }
  std::map<std::string, std::string> config;
  for (const auto& [section, content] : table) {
    if (const auto* keys = content.as_table()) {
      for (const auto& [key, value] : *keys) {
        config[std::string(section.str()) + "." + std::string(key.str())] =
            shown(value);
      }
    }
  }
  return config;
}

// A metrics.csv field: a number, or NaN where it is empty or not finite.
double metric_value(const std::string& field, const fs::path& file) {
  if (field.empty()) {
    return std::nan("");
  }
  char* end = nullptr;
  const double value = std::strtod(field.c_str(), &end);
  TORCH_CHECK(end != field.c_str() && *end == '\0',
              file.string(),
              ": '",
              field,
              "' is not a number");
  return std::isfinite(value) ? value : std::nan("");
}

// Rows shorter than the header (a column added later, a value missing) have
// NaN in the fields they lack.
void read_metrics(const fs::path& file, Run& run) {
  if (!fs::exists(fs::symlink_status(file))) {
    return;
  }
  std::istringstream metrics(run_file(file));
  std::string line;
  if (!std::getline(metrics, line)) {
    return;
  }
  run.columns = detail::csv_fields(line);
  while (std::getline(metrics, line)) {
    if (line.empty()) {
      continue;
    }
    const auto fields = detail::csv_fields(line);
    std::vector<double> row(run.columns.size(), std::nan(""));
    for (size_t i = 0; i < std::min(fields.size(), row.size()); ++i) {
      row[i] = metric_value(fields[i], file);
    }
    run.rows.push_back(std::move(row));
  }
}

Run read_run(const fs::path& folder) {
  Run run;
  run.folder = folder;
  const auto files = RunFolder::open(folder.string());
  run.config = read_config(files.config_path(), folder);
  run.finished = RunFolder::state_of(folder.string()) == RunState::kFinished;
  read_metrics(files.metrics_path(), run);
  while (run.has_column("stride" + std::to_string(run.layers) + "_h")) {
    ++run.layers;
  }
  return run;
}

// The run folders of `path`: a sweep's, in its manifest's order (those not
// started yet left out), or the run folder itself.
std::vector<fs::path> run_folders(const fs::path& path) {
  const auto manifest = path / kSweepManifestFile;
  if (!fs::is_regular_file(manifest)) {
    return {path};
  }
  std::istringstream in(run_file(manifest));
  std::string line;
  std::getline(in, line);
  std::vector<fs::path> folders;
  while (std::getline(in, line)) {
    if (line.empty()) {
      continue;
    }
    const auto folder = path / detail::csv_fields(line)[0];
    if (RunFolder::state_of(folder.string()) != RunState::kAbsent) {
      folders.push_back(folder);
    }
  }
  return folders;
}

// Every run of `paths` once, however often it is named (a folder twice, a
// run and its sweep).
std::vector<Run> collect_runs(const std::vector<std::string>& paths) {
  std::vector<Run> runs;
  std::set<fs::path> seen;
  for (const auto& path : paths) {
    TORCH_CHECK(fs::is_directory(path), "report: ", path, " is not a folder");
    for (const auto& folder : run_folders(path)) {
      if (seen.insert(fs::weakly_canonical(folder)).second) {
        runs.push_back(read_run(folder));
      }
    }
  }
  TORCH_CHECK(!runs.empty(), "report: no runs started yet in ", paths[0]);
  return runs;
}

// The one folder given, or the folders' common parent.
fs::path report_folder(const std::vector<std::string>& paths,
                       const std::string& out_option) {
  if (!out_option.empty()) {
    return out_option;
  }
  std::set<fs::path> distinct;
  for (const auto& p : paths) {
    distinct.insert(fs::weakly_canonical(p));
  }
  if (distinct.size() == 1) {
    return paths[0];
  }
  fs::path out = distinct.begin()->parent_path();
  for (const auto& absolute : distinct) {
    while (
        !out.empty() &&
        std::mismatch(out.begin(), out.end(), absolute.begin(), absolute.end())
                .first != out.end()) {
      out = out.parent_path();
    }
  }
  TORCH_CHECK(out.has_relative_path(),
              "report: the folders given share no parent but ",
              out.string(),
              ": say where the report goes with --out");
  return out;
}

// ---------------------------------------------------------------------------
// Step 2: what tells runs apart.

// The settings: config keys whose values differ between runs, the pooling
// and the seed aside.
struct Settings {
  std::vector<std::string> varying;

  std::string of(const Run& run) const {
    std::string text;
    for (const auto& key : varying) {
      text += (text.empty() ? "" : " ") + key.substr(key.find('.') + 1) + "=" +
              run.value(key);
    }
    return text.empty() ? std::string("all runs") : text;
  }
  std::string label(const Run& run) const {
    return run.value("model.pooling") + " " + of(run) + " seed " +
           run.value("train.seed");
  }
};

Settings settings_of(const std::vector<Run>& runs) {
  std::set<std::string> keys;
  for (const auto& run : runs) {
    for (const auto& [key, value] : run.config) {
      keys.insert(key);
    }
  }
  Settings settings;
  for (const auto& key : keys) {
    if (kNotASetting.count(key) != 0 || key == "model.pooling") {
      continue;
    }
    for (const auto& run : runs) {
      if (run.value(key) != runs[0].value(key)) {
        settings.varying.push_back(key);
        break;
      }
    }
  }
  return settings;
}

// The learned strides of the last epoch: "(h, w) (h, w) ...".
std::string learned_strides(const Run& run) {
  std::ostringstream out;
  for (int layer = 0; layer < run.layers; ++layer) {
    const auto prefix = "stride" + std::to_string(layer);
    const auto value = [&](const std::string& column) {
      const double v = run.last(prefix + column);
      std::ostringstream text;
      text << std::setprecision(3) << v;
      return std::isfinite(v) ? text.str() : std::string("-");
    };
    out << (layer ? " " : "") << "(" << value("_h") << ", " << value("_w")
        << ")";
  }
  return out.str();
}

// ---------------------------------------------------------------------------
// Step 3: results.csv and results.md.

std::string results_csv(const std::vector<Run>& runs,
                        const Settings& settings) {
  std::ostringstream csv;
  csv << kCsvHeader << "\n";
  for (const auto& run : runs) {
    csv << detail::csv_field(run.folder.string()) << ","
        << (run.finished ? "true" : "false") << ","
        << detail::csv_field(run.value("model.pooling")) << ","
        << detail::csv_field(settings.of(run)) << ","
        << detail::csv_field(run.value("train.seed")) << "," << run.rows.size()
        << "," << number(run.last("test_accuracy")) << ","
        << number(run.last("test_loss")) << ","
        << number(run.last("multiply_adds")) << ","
        << detail::csv_field(learned_strides(run)) << "\n";
  }
  return csv.str();
}

// Markdown table text from a run's values: no line breaks or pipes, and
// HTML's special characters and backticks as entities, shown as they are.
std::string cell(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '|' || static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else if (std::string("<>&`").find(c) != std::string::npos) {
      out += "&#" + std::to_string(static_cast<int>(c)) + ";";
    } else {
      out += c;
    }
  }
  return out;
}

// "mean ± sd (n)" of the finite values, percent; "-" when there are none.
std::string mean_and_sd(const std::vector<double>& all) {
  std::vector<double> values;
  std::copy_if(
      all.begin(), all.end(), std::back_inserter(values), [](double v) {
        return std::isfinite(v);
      });
  if (values.empty()) {
    return "- (" + std::to_string(all.size()) + ")";
  }
  double mean = 0;
  for (const double v : values) {
    mean += v / static_cast<double>(values.size());
  }
  std::ostringstream out;
  out << std::fixed << std::setprecision(2) << mean;
  if (values.size() > 1) {
    double squares = 0;
    for (const double v : values) {
      squares += (v - mean) * (v - mean);
    }
    out << " ± " << std::sqrt(squares / static_cast<double>(values.size() - 1));
  }
  out << " (" << values.size() << ")";
  return out.str();
}

// Rows pooling, columns settings, finished runs only.
std::string accuracy_table(const std::vector<Run>& runs,
                           const Settings& settings) {
  std::vector<std::string> poolings, columns;
  std::map<std::pair<std::string, std::string>, std::vector<double>> cells;
  for (const auto& run : runs) {
    if (!run.finished) {
      continue;
    }
    const auto pooling = run.value("model.pooling");
    const auto setting = settings.of(run);
    if (std::find(poolings.begin(), poolings.end(), pooling) ==
        poolings.end()) {
      poolings.push_back(pooling);
    }
    if (std::find(columns.begin(), columns.end(), setting) == columns.end()) {
      columns.push_back(setting);
    }
    cells[{pooling, setting}].push_back(100.0 * run.last("test_accuracy"));
  }
  std::ostringstream md;
  md << "| pooling |";
  for (const auto& s : columns) {
    md << " " << cell(s) << " |";
  }
  md << "\n| --- |";
  for (size_t i = 0; i < columns.size(); ++i) {
    md << " --- |";
  }
  md << "\n";
  for (const auto& p : poolings) {
    md << "| " << cell(p) << " |";
    for (const auto& s : columns) {
      const auto found = cells.find({p, s});
      md << " " << (found == cells.end() ? "" : mean_and_sd(found->second))
         << " |";
    }
    md << "\n";
  }
  return md.str();
}

std::string results_md(const std::vector<Run>& runs,
                       const Settings& settings,
                       int layers) {
  const auto unfinished = static_cast<size_t>(std::count_if(
      runs.begin(), runs.end(), [](const Run& run) { return !run.finished; }));
  std::ostringstream md;
  md << kReportMark
     << "\n# Results\n\nFinal test accuracy (%), mean ± "
        "sample standard deviation over seeds, and the number of runs, of "
     << runs.size() - unfinished << " finished run(s)";
  if (unfinished > 0) {
    md << " (" << unfinished << " unfinished, left out)";
  }
  md << "; - where a value is missing or not finite.\n\n"
     << accuracy_table(runs, settings)
     << "\n| run | pooling | setting | seed | epochs | test accuracy | "
        "multiply-adds | learned strides |\n| --- | --- | --- | --- | ---: | "
        "---: | ---: | --- |\n";
  const auto shown_or_dash =
      [](double value, double scale, const std::string& unit) {
        std::ostringstream out;
        out << std::fixed << std::setprecision(2) << value * scale << unit;
        return std::isfinite(value) ? out.str() : std::string("-");
      };
  for (const auto& run : runs) {
    md << "| " << cell(run.folder.filename().string())
       << (run.finished ? "" : " (unfinished)") << " | "
       << cell(run.value("model.pooling")) << " | " << cell(settings.of(run))
       << " | " << cell(run.value("train.seed")) << " | " << run.rows.size()
       << " | " << shown_or_dash(run.last("test_accuracy"), 100.0, "%") << " | "
       << shown_or_dash(run.last("multiply_adds"), 1e-6, " M") << " | "
       << cell(learned_strides(run)) << " |\n";
  }
  md << "\n![test accuracy per epoch](accuracy.svg)\n\n"
        "![accuracy against multiply-adds](accuracy_vs_multiply_adds.svg)\n";
  if (layers > 0) {
    md << "\n![learned strides](strides.svg)\n";
  }
  return md.str();
}

// ---------------------------------------------------------------------------
// Step 4: plots. gnuplot runs in a private scratch folder on scripts of
// fixed text: every name, label and value from a run reaches it through
// data files (quoted strings there are data, never commands), and files are
// named by number. The SVGs are then copied out.

// A label as a quoted string of a gnuplot data file: no quote, backslash or
// control character can end it or escape from it. Long ones are cut (a key
// too wide for its panel is not drawn at all).
std::string data_label(const std::string& text) {
  size_t cut = std::min<size_t>(text.size(), 60);
  while (cut < text.size() && cut > 0 &&
         (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
    --cut;  // not inside a UTF-8 character
  }
  std::string out = "\"";
  for (const char c : cut == text.size() ? text : text.substr(0, cut) + "...") {
    const bool unsafe = c == '"' || c == '\\' ||
                        static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    out += unsafe ? ' ' : c;
  }
  return out + "\"";
}

class Plotter {
 public:
  Plotter() {
    std::string name =
        (fs::temp_directory_path() / "diffstride_report_XXXXXX").string();
    TORCH_CHECK(::mkdtemp(name.data()) != nullptr,
                "report: cannot make a scratch folder in ",
                fs::temp_directory_path().string(),
                ": ",
                std::strerror(errno));
    scratch_ = name;
  }
  ~Plotter() {
    std::error_code ignored;
    fs::remove_all(scratch_, ignored);
  }
  Plotter(const Plotter&) = delete;
  Plotter& operator=(const Plotter&) = delete;

  void write(const std::string& name, const std::string& text) const {
    std::ofstream out(scratch_ / name);
    out << text;
    TORCH_CHECK(
        out.flush(), "report: cannot write ", (scratch_ / name).string());
  }

  // Runs `body` (after the common settings) in the scratch folder and
  // returns the SVG it draws, marked as the report's.
  std::string draw(const std::string& body) const {
    write("plot.gp",
          "set terminal svg size 960,600 dynamic noenhanced font 'sans,12' "
          "background rgb 'white'\nset output 'plot.svg'\nset datafile "
          "columnheaders\nset grid\nset key outside right top\n" +
              body);
    run_gnuplot();
    std::ifstream in(scratch_ / "plot.svg", std::ios::binary);
    std::string svg((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
    const auto declaration_end = svg.rfind("?>", svg.find("<svg"));
    const auto at =
        declaration_end == std::string::npos ? 0 : declaration_end + 2;
    return svg.insert(at, "\n" + kReportMark);
  }

 private:
  void run_gnuplot() const;

  fs::path scratch_;
};

void Plotter::run_gnuplot() const {
  int pipe_fds[2];
  TORCH_CHECK(::pipe(pipe_fds) == 0, "report: cannot start gnuplot");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::dup2(pipe_fds[1], STDERR_FILENO);
    ::close(pipe_fds[0]);
    if (::chdir(scratch_.c_str()) == 0) {
      ::execlp("gnuplot", "gnuplot", "plot.gp", static_cast<char*>(nullptr));
    }
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  if (pid < 0) {
    ::close(pipe_fds[0]);
    TORCH_CHECK(false, "report: cannot start gnuplot (fork failed)");
  }
  std::string output;
  char buffer[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) != 0;) {
    if (n > 0) {
      output.append(buffer, static_cast<size_t>(n));
    } else if (errno != EINTR) {
      break;
    }
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  TORCH_CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 127),
              "the plots need gnuplot, which was not found (Debian: apt-get "
              "install gnuplot-nox); results.md and results.csv are written");
  TORCH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "gnuplot failed on a report plot: ",
              output);
}

// Written when a plot has no point to draw.
const char* kNothingToPlot =
    "set xrange [0:1]\nset yrange [0:1]\nset label 1 'no finished epoch yet' "
    "at graph 0.5, graph 0.5 center\nplot 2 notitle\nunset label 1\n"
    "set autoscale\n";

// Whether `run` has an epoch where columns x and y are both finite.
bool has_point(const Run& run, size_t x, size_t y) {
  return std::any_of(run.rows.begin(), run.rows.end(), [&](const auto& row) {
    return x < row.size() && y < row.size() && std::isfinite(row[x]) &&
           std::isfinite(row[y]);
  });
}

// runI.dat: a header of the run's label (its columns' titles), then its
// metrics, one row per epoch.
void write_run_data(const Plotter& plotter,
                    const std::vector<Run>& runs,
                    const Settings& settings) {
  for (size_t i = 0; i < runs.size(); ++i) {
    std::ostringstream data;
    const auto label = data_label(settings.label(runs[i]));
    for (size_t c = 0; c < std::max<size_t>(runs[i].columns.size(), 1); ++c) {
      data << (c ? " " : "") << label;
    }
    data << "\n" << std::setprecision(9);
    for (const auto& row : runs[i].rows) {
      for (size_t c = 0; c < row.size(); ++c) {
        data << (c ? " " : "") << (std::isfinite(row[c]) ? row[c] : NAN);
      }
      data << "\n";
    }
    plotter.write("run" + std::to_string(i) + ".dat", data.str());
  }
}

// gnuplot counts columns from 1.
std::string column(const Run& run, const std::string& name) {
  return std::to_string(run.column_index(name) + 1);
}

std::string epoch_tics(const std::vector<Run>& runs) {
  size_t most_epochs = 0;
  for (const auto& run : runs) {
    most_epochs = std::max(most_epochs, run.rows.size());
  }
  return most_epochs <= 20 ? "set xtics 1\n" : "";
}

std::string accuracy_plot(const Plotter& plotter,
                          const std::vector<Run>& runs) {
  std::ostringstream body;
  body << epoch_tics(runs)
       << "set xlabel 'epoch'\nset ylabel 'test accuracy (%)'\nset title "
          "'Test accuracy per epoch'\n";
  std::string series;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& run = runs[i];
    if (!has_point(run,
                   run.column_index("epoch"),
                   run.column_index("test_accuracy"))) {
      continue;
    }
    series += (series.empty() ? "plot " : ", \\\n  ") + std::string("'run") +
              std::to_string(i) + ".dat' using " + column(run, "epoch") +
              ":($" + column(run, "test_accuracy") +
              "*100) with linespoints title columnheader(1)";
  }
  return plotter.draw(body.str() +
                      (series.empty() ? kNothingToPlot : series + "\n"));
}

// One point per run, one file and colour per pooling; the third column is
// the point's label, its setting.
std::string multiply_adds_plot(const Plotter& plotter,
                               const std::vector<Run>& runs,
                               const Settings& settings) {
  std::vector<std::string> order;
  std::map<std::string, std::ostringstream> by_pooling;
  for (const auto& run : runs) {
    const double x = run.last("multiply_adds"), y = run.last("test_accuracy");
    if (!std::isfinite(x) || !std::isfinite(y)) {
      continue;
    }
    const auto pooling = run.value("model.pooling");
    if (by_pooling.count(pooling) == 0) {
      order.push_back(pooling);
      by_pooling[pooling] << data_label(pooling) << " y label\n";
    }
    by_pooling[pooling] << std::setprecision(9) << x << " " << 100.0 * y << " "
                        << data_label(settings.of(run)) << "\n";
  }
  std::ostringstream body;
  body << "set xlabel 'multiply-adds per example'\nset ylabel 'final test "
          "accuracy (%)'\nset format x '%.2s%c'\nset title 'Accuracy "
          "against multiply-adds (one point per run)'\nset offsets graph "
          "0.05, graph 0.05, graph 0.05, graph 0.05\n";
  for (size_t i = 0; i < order.size(); ++i) {
    const auto file = "'madds" + std::to_string(i) + ".dat'";
    plotter.write("madds" + std::to_string(i) + ".dat",
                  by_pooling[order[i]].str());
    body << (i ? ", \\\n  " : "plot ") << file
         << " using 1:2 with points pointsize 1.5 pointtype " << 5 + 2 * i
         << " title columnheader(1), \\\n  " << file
         << " using 1:2:3 with labels font ',9' offset char 0,1 notitle";
  }
  return plotter.draw(body.str() + (order.empty() ? kNothingToPlot : "\n"));
}

std::string strides_plot(const Plotter& plotter,
                         const std::vector<Run>& runs,
                         int layers) {
  std::ostringstream body;
  body << "set multiplot layout 1," << layers
       << " title 'Learned strides per DiffStride layer (solid: height, "
          "dashed: width)'\nset xlabel 'epoch'\nset ylabel 'stride'\n"
          "set key below\n"
       << epoch_tics(runs);
  for (int layer = 0; layer < layers; ++layer) {
    const auto prefix = "stride" + std::to_string(layer);
    body << "set title 'layer " << layer << "'\n";
    std::string series;
    for (size_t i = 0; i < runs.size(); ++i) {
      const auto& run = runs[i];
      if (run.layers <= layer || !has_point(run,
                                            run.column_index("epoch"),
                                            run.column_index(prefix + "_h"))) {
        continue;
      }
      const auto data = "'run" + std::to_string(i) + ".dat' using " +
                        column(run, "epoch") + ":";
      series += (series.empty() ? "plot " : ", \\\n  ") + data +
                column(run, prefix + "_h") +
                " with lines linewidth 2 linecolor " + std::to_string(i + 1) +
                (layer == 0 ? " title columnheader(1)" : " notitle") +
                ", \\\n  " + data + column(run, prefix + "_w") +
                " with lines linewidth 2 dashtype 2 linecolor " +
                std::to_string(i + 1) + " notitle";
    }
    body << (series.empty() ? kNothingToPlot : series + "\n");
  }
  return plotter.draw(body.str() + "unset multiplot\n");
}

}  // namespace

std::vector<std::string> write_report(const std::vector<std::string>& paths,
                                      const std::string& out_option) {
  TORCH_CHECK(!paths.empty(), "report: expected sweep or run folders");
  const auto runs = collect_runs(paths);
  const auto settings = settings_of(runs);
  // Panels of the strides plot: the layers of the run that has the most,
  // at most kMostStridePanels (0: no strides plot).
  int layers = 0;
  for (const auto& run : runs) {
    layers = std::min(std::max(layers, run.layers), kMostStridePanels);
  }
  const fs::path out = report_folder(paths, out_option);
  const std::vector<std::pair<std::string, std::string>> outputs = {
      {"results.csv", kCsvHeader},
      {"results.md", kReportMark},
      {"accuracy.svg", kReportMark},
      {"accuracy_vs_multiply_adds.svg", kReportMark},
      {"strides.svg", kReportMark}};
  // All or nothing: every file there must be an earlier report's.
  for (const auto& [name, mark] : outputs) {
    detail::check_owned_file(out / name, mark, "diffstride report");
  }
  fs::create_directories(out);
  std::vector<std::string> written;
  const auto write = [&](size_t output, const std::string& text) {
    const auto& [name, mark] = outputs[output];
    detail::replace_owned_file(out / name, text, mark, "diffstride report");
    written.push_back((out / name).string());
  };
  write(0, results_csv(runs, settings));
  write(1, results_md(runs, settings, layers));
  const Plotter plotter;
  write_run_data(plotter, runs, settings);
  write(2, accuracy_plot(plotter, runs));
  write(3, multiply_adds_plot(plotter, runs, settings));
  if (layers > 0) {
    write(4, strides_plot(plotter, runs, layers));
  }
  return written;
}

}  // namespace diffstride
