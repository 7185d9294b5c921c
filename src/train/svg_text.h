#pragma once
// Text inside the SVG documents bidora writes (training_plot.svg, weight_decomposition.svg).
#include <string>
#include <string_view>

namespace bidora::train {

// Text for XML content and attributes. XML 1.0 cannot carry most control characters even as
// character references, and a browser refuses the whole file over one bad byte, so: markup
// characters become entities, tabs/newlines become spaces, other controls are dropped and
// invalid UTF-8 bytes become U+FFFD.
std::string xml_escape(std::string_view s);

}  // namespace bidora::train
