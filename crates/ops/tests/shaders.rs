//! Every shader in `shaders/` parses and validates with naga (with each
//! generated specialisation of `prior_ops::shaders::SPECIALISED`), and every
//! `.wgsl` file in the folder is registered in `prior_ops::shaders::ALL`.

#[test]
fn every_shader_validates_with_naga() {
    let all = prior_ops::shaders::ALL.iter();
    for (name, src) in all.chain(prior_ops::shaders::SPECIALISED) {
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        let mut v = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        v.validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    }
}

#[test]
fn every_shader_file_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    files.sort();
    let mut known: Vec<String> = prior_ops::shaders::ALL
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    known.sort();
    assert_eq!(files, known);
}
