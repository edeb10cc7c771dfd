//! Build script: the app's GResource (the CSS and the device-class icons), so the binary carries
//! them wherever it is installed. The sources stay at the top of the repository (ui/, assets/).

fn main() {
    glib_build_tools::compile_resources(
        &["../../ui", "../../assets"],
        "../../ui/io.github.passage.Passage.gresource.xml",
        "passage.gresource",
    );
}
