#include "top_screen.h"

#include <fmt/format.h>
#include <ncurses.h>

#include <algorithm>
#include <string>

namespace sockdispatch::cli {

namespace {

// initscr .. endwin, whatever happens in between.
class Curses {
public:
  Curses() {
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    if (has_colors()) {
      start_color();
      use_default_colors();
      init_pair(1, COLOR_GREEN, -1);  // open
      init_pair(2, COLOR_YELLOW, -1); // queued
      init_pair(3, COLOR_CYAN, -1);   // headers
    }
  }
  ~Curses() { endwin(); }
  Curses(const Curses &) = delete;
  Curses &operator=(const Curses &) = delete;
};

constexpr int kBarWidth = 24;

// open as '#', then queued as '+', scaled so that `scale` fills the bar.
void drawBar(int y, int x, uint64_t open, uint64_t queued, uint64_t scale) {
  auto cells = [scale](uint64_t value) {
    if (value == 0) {
      return 0;
    }
    auto width = static_cast<int>((value * kBarWidth + scale - 1) / scale);
    return std::clamp(width, 1, kBarWidth);
  };
  int openCells = cells(open);
  int queuedCells = std::min(cells(open + queued) - openCells, kBarWidth - openCells);
  mvaddch(y, x, '[');
  attron(COLOR_PAIR(1));
  for (int i = 0; i < openCells; ++i) {
    addch('#');
  }
  attroff(COLOR_PAIR(1));
  attron(COLOR_PAIR(2));
  for (int i = 0; i < queuedCells; ++i) {
    addch('+');
  }
  attroff(COLOR_PAIR(2));
  for (int i = openCells + queuedCells; i < kBarWidth; ++i) {
    addch(' ');
  }
  addch(']');
}

void drawHelp(int y) {
  const char *lines[] = {
      "keys:  q  quit",
      "       p  sort by the next column (slot, open+queued, accepted/s, requests/s)",
      "       ?  this help (any key closes it)",
      "bars:  # open connections, + queued (chosen, not accepted yet); full = the busiest",
      "state: * after it means draining (tune --drain): chosen by no policy",
  };
  for (const char *line : lines) {
    mvaddstr(y++, 2, line);
  }
}

void draw(const std::vector<TopFrame> &frames, TopSort sort, std::chrono::milliseconds interval,
          bool help) {
  erase();
  int y = 0;
  attron(A_BOLD);
  mvaddstr(y++, 0,
           fmt::format("sockdispatch top  every {:.1f} s  sorted by {}  (q quit, p sort, ? help)",
                       static_cast<double>(interval.count()) / 1000.0, sortName(sort))
               .c_str());
  attroff(A_BOLD);
  if (frames.empty()) {
    mvaddstr(++y, 0, "no attachments");
  }
  uint64_t scale = 1;
  for (const TopFrame &frame : frames) {
    for (const TopRow &row : frame.rows) {
      scale = std::max(scale, row.open + row.queued);
    }
  }
  for (const TopFrame &frame : frames) {
    ++y;
    mvaddstr(y++, 0, formatTopSummary(frame).c_str());
    attron(COLOR_PAIR(3) | A_BOLD);
    mvaddstr(y++, 0, (formatTopHeader() + "  open # / queued +").c_str());
    attroff(COLOR_PAIR(3) | A_BOLD);
    for (const TopRow &row : frame.rows) {
      if (y >= LINES - 1) {
        break;
      }
      std::string text = formatTopRow(row);
      mvaddstr(y, 0, text.c_str());
      drawBar(y, static_cast<int>(text.size()) + 2, row.open, row.queued, scale);
      ++y;
    }
  }
  if (help) {
    drawHelp(std::min(y + 1, std::max(LINES - 6, 1)));
  }
  refresh();
}

} // namespace

int runTopScreen(const std::function<void()> &refresh,
                 const std::function<std::vector<TopFrame>(TopSort)> &frames,
                 std::chrono::milliseconds interval) {
  Curses curses;
  TopSort sort = TopSort::kSlot;
  bool help = false;
  auto next = std::chrono::steady_clock::now() + interval;
  for (;;) {
    draw(frames(sort), sort, interval, help);
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        next - std::chrono::steady_clock::now());
    timeout(static_cast<int>(std::max<int64_t>(wait.count(), 0)));
    int key = getch();
    if (key == 'q' || key == 'Q') {
      return 0;
    }
    if (key == ERR) { // the refresh is due
      refresh();
      next = std::chrono::steady_clock::now() + interval;
    } else if (help) {
      help = false;
    } else if (key == 'p' || key == 'P') {
      sort = nextSort(sort);
    } else if (key == '?' || key == 'h') {
      help = true;
    }
  }
}

} // namespace sockdispatch::cli
