#include <diffstride/train/report.h>

#include <diffstride/train/run_folder.h>
#include <diffstride/train/sweep.h>

#include "train/checked_file.h"
#include "train/csv.h"

#include <c10/util/Exception.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>
#include <unistd.h>

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

struct Run {
  fs::path folder;
  std::map<std::string, std::string> config;  // key -> value as shown
  std::vector<std::string> columns;           // of metrics.csv
  std::vector<std::vector<double>> rows;      // one per epoch
  bool finished = false;

  // The position of column `name` in metrics.csv (columns.size() when
  // absent).
  size_t column_index(const std::string& name) const {
    return static_cast<size_t>(
        std::find(columns.begin(), columns.end(), name) - columns.begin());
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

Run read_run(const fs::path& folder) {
  Run run;
  run.folder = folder;
  const auto files = RunFolder::resume(folder.string());
  const auto config_path = files.config_path();
  TORCH_CHECK(fs::is_regular_file(config_path),
              folder.string(),
              " is not a run folder (no config.toml)");
  toml::table table;
  try {
    table = toml::parse_file(config_path.string());
  } catch (const toml::parse_error& error) {
    TORCH_CHECK(false, config_path.string(), ": ", error.description());
  }
  for (const auto& [section, content] : table) {
    if (const auto* keys = content.as_table()) {
      for (const auto& [key, value] : *keys) {
        run.config[std::string(section.str()) + "." + std::string(key.str())] =
            shown(value);
      }
    }
  }
  run.finished = RunFolder::state_of(folder.string()) == RunState::kFinished;
  std::ifstream metrics(files.metrics_path());
  std::string line;
  if (metrics && std::getline(metrics, line)) {
    run.columns = detail::csv_fields(line);
    while (std::getline(metrics, line)) {
      if (line.empty()) {
        continue;
      }
      const auto fields = detail::csv_fields(line);
      TORCH_CHECK(fields.size() == run.columns.size(),
                  files.metrics_path().string(),
                  ": a row of ",
                  fields.size(),
                  " fields under a header of ",
                  run.columns.size());
      std::vector<double> row;
      for (const auto& f : fields) {
        char* end = nullptr;
        row.push_back(std::strtod(f.c_str(), &end));
        TORCH_CHECK(end != f.c_str() && *end == '\0',
                    files.metrics_path().string(),
                    ": '",
                    f,
                    "' is not a number");
      }
      run.rows.push_back(std::move(row));
    }
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
  std::ifstream in(manifest);
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

// For gnuplot's single-quoted strings.
std::string quoted(const std::string& text) {
  std::string out = "'";
  for (const char c : text) {
    out += c == '\'' ? std::string("''") : std::string(1, c);
  }
  return out + "'";
}

// The learned strides of the last epoch: "(h, w) (h, w) ...".
std::string learned_strides(const Run& run) {
  std::ostringstream out;
  for (int layer = 0;; ++layer) {
    const auto prefix = "stride" + std::to_string(layer);
    const double h = run.last(prefix + "_h"), w = run.last(prefix + "_w");
    if (std::isnan(h)) {
      break;
    }
    out << (layer ? " " : "") << "(" << std::setprecision(3) << h << ", " << w
        << ")";
  }
  return out.str();
}

int diffstride_layers(const Run& run) {
  int layers = 0;
  while (run.has_column("stride" + std::to_string(layers) + "_h")) {
    ++layers;
  }
  return layers;
}

void run_gnuplot(const fs::path& script) {
  const auto command = "gnuplot " + quoted(script.string()) + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  TORCH_CHECK(pipe != nullptr, "cannot start gnuplot");
  std::string output;
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) {
    output += buffer;
  }
  const int status = ::pclose(pipe);
  TORCH_CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 127,
              "the plots need gnuplot, which was not found (Debian: apt-get "
              "install gnuplot-nox); results.md and results.csv are written");
  TORCH_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "gnuplot failed on ",
              script.string(),
              ": ",
              output);
}

const char* kTerminal =
    "set terminal svg size 960,600 dynamic noenhanced font 'sans,12' "
    "background rgb 'white'\n";

}  // namespace

std::vector<std::string> write_report(const std::vector<std::string>& paths,
                                      const std::string& out_option) {
  TORCH_CHECK(!paths.empty(), "report: expected sweep or run folders");
  std::vector<Run> runs;
  for (const auto& path : paths) {
    TORCH_CHECK(fs::is_directory(path), "report: ", path, " is not a folder");
    for (const auto& folder : run_folders(path)) {
      runs.push_back(read_run(folder));
    }
  }
  TORCH_CHECK(!runs.empty(), "report: no runs started yet in ", paths[0]);
  // DiffStride layers of the run that has the most (0: no strides plot).
  int layers = 0;
  for (const auto& run : runs) {
    layers = std::max(layers, diffstride_layers(run));
  }
  fs::path out = out_option;
  if (out.empty()) {
    if (paths.size() == 1) {
      out = paths[0];
    } else {
      out = fs::absolute(paths[0]).lexically_normal().parent_path();
      for (const auto& p : paths) {
        const auto absolute = fs::absolute(p).lexically_normal();
        while (!out.empty() &&
               std::mismatch(out.begin(), out.end(), absolute.begin(),
                             absolute.end())
                       .first != out.end()) {
          out = out.parent_path();
        }
      }
    }
  }
  fs::create_directories(out);

  // The settings: config keys whose values differ between runs, the pooling
  // and the seed aside.
  std::set<std::string> keys;
  for (const auto& run : runs) {
    for (const auto& [key, value] : run.config) {
      keys.insert(key);
    }
  }
  std::vector<std::string> varying;
  for (const auto& key : keys) {
    if (kNotASetting.count(key) != 0 || key == "model.pooling") {
      continue;
    }
    for (const auto& run : runs) {
      if (run.value(key) != runs[0].value(key)) {
        varying.push_back(key);
        break;
      }
    }
  }
  const auto setting_of = [&](const Run& run) {
    std::string text;
    for (const auto& key : varying) {
      text += (text.empty() ? "" : " ") + key.substr(key.find('.') + 1) + "=" +
              run.value(key);
    }
    return text.empty() ? std::string("all runs") : text;
  };
  const auto label_of = [&](const Run& run) {
    return run.value("model.pooling") + " " + setting_of(run) + " seed " +
           run.value("train.seed");
  };

  std::vector<std::string> written;
  const auto write = [&](const std::string& name, const std::string& text) {
    detail::replace_file(out / name, text);
    written.push_back((out / name).string());
  };

  // results.csv: one row per run.
  {
    std::ostringstream csv;
    csv << "run,finished,pooling,setting,seed,epochs,test_accuracy,test_loss,"
           "multiply_adds,learned_strides\n";
    for (const auto& run : runs) {
      csv << detail::csv_field(run.folder.string()) << ","
          << (run.finished ? "true" : "false") << ","
          << detail::csv_field(run.value("model.pooling")) << ","
          << detail::csv_field(setting_of(run)) << "," << run.value("train.seed") << ","
          << run.rows.size() << "," << number(run.last("test_accuracy")) << ","
          << number(run.last("test_loss")) << ","
          << number(run.last("multiply_adds")) << ","
          << detail::csv_field(learned_strides(run)) << "\n";
    }
    write("results.csv", csv.str());
  }

  // results.md: rows pooling, columns settings, finished runs only.
  {
    std::vector<std::string> poolings, settings;
    std::map<std::pair<std::string, std::string>, std::vector<double>> cells;
    size_t unfinished = 0;
    for (const auto& run : runs) {
      if (!run.finished) {
        ++unfinished;
        continue;
      }
      const auto pooling = run.value("model.pooling");
      const auto setting = setting_of(run);
      if (std::find(poolings.begin(), poolings.end(), pooling) ==
          poolings.end()) {
        poolings.push_back(pooling);
      }
      if (std::find(settings.begin(), settings.end(), setting) ==
          settings.end()) {
        settings.push_back(setting);
      }
      cells[{pooling, setting}].push_back(100.0 * run.last("test_accuracy"));
    }
    std::ostringstream md;
    md << "# Results\n\nFinal test accuracy (%), mean ± sample standard "
          "deviation over seeds, and the number of runs, of "
       << runs.size() - unfinished << " finished run(s)";
    if (unfinished > 0) {
      md << " (" << unfinished << " unfinished, left out)";
    }
    md << ".\n\n| pooling |";
    for (const auto& s : settings) {
      md << " " << s << " |";
    }
    md << "\n| --- |";
    for (size_t i = 0; i < settings.size(); ++i) {
      md << " --- |";
    }
    md << "\n";
    for (const auto& p : poolings) {
      md << "| " << p << " |";
      for (const auto& s : settings) {
        const auto found = cells.find({p, s});
        if (found == cells.end()) {
          md << " |";
          continue;
        }
        const auto& values = found->second;
        double mean = 0;
        for (const double v : values) {
          mean += v;
        }
        mean /= static_cast<double>(values.size());
        md << " " << std::fixed << std::setprecision(2) << mean;
        if (values.size() > 1) {
          double squares = 0;
          for (const double v : values) {
            squares += (v - mean) * (v - mean);
          }
          md << " ± "
             << std::sqrt(squares / static_cast<double>(values.size() - 1));
        }
        md << " (" << values.size() << ") |";
      }
      md << "\n";
    }
    md << std::defaultfloat
       << "\n| run | pooling | setting | seed | epochs | test accuracy | "
          "multiply-adds | learned strides |\n| --- | --- | --- | --- | ---: | "
          "---: | ---: | --- |\n";
    for (const auto& run : runs) {
      md << "| " << run.folder.filename().string()
         << (run.finished ? "" : " (unfinished)") << " | "
         << run.value("model.pooling") << " | " << setting_of(run) << " | "
         << run.value("train.seed") << " | " << run.rows.size() << " | ";
      if (run.rows.empty()) {
        md << "- | - | |\n";
        continue;
      }
      md << std::fixed << std::setprecision(2)
         << 100.0 * run.last("test_accuracy") << "% | "
         << run.last("multiply_adds") / 1e6 << " M | " << std::defaultfloat
         << learned_strides(run) << " |\n";
    }
    md << "\n![test accuracy per epoch](accuracy.svg)\n\n"
          "![accuracy against multiply-adds](accuracy_vs_multiply_adds.svg)\n";
    if (layers > 0) {
      md << "\n![learned strides](strides.svg)\n";
    }
    write("results.md", md.str());
  }

  // Plots: data files and scripts in a scratch folder, SVG files by gnuplot.
  const auto scratch =
      fs::temp_directory_path() /
      ("diffstride_report_" + std::to_string(::getpid()));
  fs::create_directories(scratch);
  struct Cleanup {
    fs::path path;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } cleanup{scratch};
  for (size_t i = 0; i < runs.size(); ++i) {
    std::ofstream data(scratch / ("run" + std::to_string(i) + ".dat"));
    for (const auto& row : runs[i].rows) {
      for (size_t c = 0; c < row.size(); ++c) {
        data << (c ? " " : "") << std::setprecision(9) << row[c];
      }
      data << "\n";
    }
  }
  // gnuplot counts columns from 1.
  const auto column_index = [](const Run& run, const std::string& name) {
    return std::to_string(run.column_index(name) + 1);
  };
  const auto plot = [&](const std::string& name, const std::string& body) {
    const auto script = scratch / (name + ".gp");
    std::ofstream(script) << kTerminal << "set output " << quoted((out / name).string())
                          << "\nset grid\nset key outside right top\n"
                          << body;
    run_gnuplot(script);
    written.push_back((out / name).string());
  };
  // Whole epochs on the axis when there are few.
  size_t most_epochs = 0;
  for (const auto& run : runs) {
    most_epochs = std::max(most_epochs, run.rows.size());
  }
  const std::string epoch_tics = most_epochs <= 20 ? "set xtics 1\n" : "";
  {
    std::ostringstream body;
    body << epoch_tics << "set xlabel 'epoch'\nset ylabel 'test accuracy (%)'\n"
            "set title 'Test accuracy per epoch'\nplot ";
    bool first = true;
    for (size_t i = 0; i < runs.size(); ++i) {
      if (runs[i].rows.empty()) {
        continue;
      }
      body << (first ? "" : ", \\\n  ")
           << quoted((scratch / ("run" + std::to_string(i) + ".dat")).string())
           << " using 1:($" << column_index(runs[i], "test_accuracy")
           << "*100) with linespoints title " << quoted(label_of(runs[i]));
      first = false;
    }
    if (first) {
      body << "NaN title 'no epoch finished yet'";
    }
    plot("accuracy.svg", body.str() + "\n");
  }
  {
    // One point per run, one colour per pooling.
    std::map<std::string, std::ofstream> by_pooling;
    std::vector<std::string> order;
    for (const auto& run : runs) {
      if (run.rows.empty()) {
        continue;
      }
      const auto pooling = run.value("model.pooling");
      if (by_pooling.count(pooling) == 0) {
        order.push_back(pooling);
        by_pooling[pooling].open(scratch / ("madds_" + std::to_string(order.size()) +
                                            ".dat"));
      }
      // Third column: the point's label, its setting.
      auto label = setting_of(run);
      std::replace(label.begin(), label.end(), '"', '\'');
      by_pooling[pooling] << std::setprecision(9) << run.last("multiply_adds")
                          << " " << 100.0 * run.last("test_accuracy") << " \""
                          << label << "\"\n";
    }
    for (auto& [p, file] : by_pooling) {
      file.close();
    }
    std::ostringstream body;
    body << "set xlabel 'multiply-adds per example'\nset ylabel 'final test "
            "accuracy (%)'\nset format x '%.2s%c'\nset title 'Accuracy "
            "against multiply-adds (one point per run)'\nset offsets graph "
            "0.05, graph 0.05, graph 0.05, graph 0.05\nplot ";
    for (size_t i = 0; i < order.size(); ++i) {
      body << (i ? ", \\\n  " : "")
           << quoted((scratch / ("madds_" + std::to_string(i + 1) + ".dat"))
                         .string())
           << " using 1:2 with points pointsize 1.5 pointtype " << 5 + 2 * i
           << " title " << quoted(order[i]) << ", \\\n  "
           << quoted((scratch / ("madds_" + std::to_string(i + 1) + ".dat"))
                         .string())
           << " using 1:2:3 with labels font ',9' offset char 0,1 notitle";
    }
    if (order.empty()) {
      body << "NaN title 'no epoch finished yet'";
    }
    plot("accuracy_vs_multiply_adds.svg", body.str() + "\n");
  }
  if (layers > 0) {
    std::ostringstream body;
    body << "set multiplot layout 1," << layers
         << " title 'Learned strides per DiffStride layer (solid: height, "
            "dashed: width)'\nset xlabel 'epoch'\nset ylabel 'stride'\n"
            "set key below\n"
         << epoch_tics;
    for (int layer = 0; layer < layers; ++layer) {
      const auto prefix = "stride" + std::to_string(layer);
      body << "set title 'layer " << layer << "'\nplot ";
      bool first = true;
      for (size_t i = 0; i < runs.size(); ++i) {
        if (diffstride_layers(runs[i]) <= layer) {
          continue;
        }
        const auto data =
            quoted((scratch / ("run" + std::to_string(i) + ".dat")).string());
        body << (first ? "" : ", \\\n  ") << data << " using 1:"
             << column_index(runs[i], prefix + "_h")
             << " with lines linewidth 2 linecolor " << i + 1 << " title "
             << (layer == 0 ? quoted(label_of(runs[i])) : "''") << ", \\\n  "
             << data << " using 1:" << column_index(runs[i], prefix + "_w")
             << " with lines linewidth 2 dashtype 2 linecolor " << i + 1
             << " notitle";
        first = false;
      }
      body << "\n";
    }
    body << "unset multiplot\n";
    plot("strides.svg", body.str());
  }
  return written;
}

}  // namespace diffstride
