#include "cli/app.h"

int main(int argc, char** argv) {
  return bidora::cli::run(argc, argv);
}
