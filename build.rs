//! Build script: only the app (feature `gui`) has something to build — its GResource (the CSS
//! and the device-class icons), so the binary carries them wherever it is installed.

fn main() {
    #[cfg(feature = "gui")]
    glib_build_tools::compile_resources(
        &["ui", "assets"],
        "ui/io.github.passage.Passage.gresource.xml",
        "passage.gresource",
    );
}
