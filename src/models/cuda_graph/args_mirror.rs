//! `GemvArgs` crosses the FFI boundary by value (`cuLaunchKernelEx` copies the Rust struct's bytes
//! into the kernel's parameter), so the Rust mirror in `projection.rs` and the C struct in
//! `../kernels/llama_decode.cu` must agree field for field: a field added to one side only shifts
//! every later field and the kernels read garbage, with no error anywhere. The cuda build cannot
//! be run in CI, so this test compares the two declarations as text, in every build.

#[cfg(test)]
mod tests {
    const CUDA: &str = include_str!("../kernels/llama_decode.cu");
    const RUST: &str = include_str!("projection.rs");

    /// (name, kind) in declaration order; kind: "ptr" (8 bytes), "i32" or "f32".
    fn cuda_fields() -> Vec<(String, &'static str)> {
        let start = CUDA.find("struct GemvArgs {").expect("struct GemvArgs in llama_decode.cu");
        let body = &CUDA[start + "struct GemvArgs {".len()..];
        let body = &body[..body.find("};").expect("end of struct GemvArgs")];
        let code: String = body.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        let mut fields = Vec::new();
        for decl in code.split(';').map(str::trim).filter(|d| !d.is_empty()) {
            let pointer = decl.contains('*');
            let (ty, names) = match decl.find('*') {
                Some(star) => (&decl[..star], &decl[star + 1..]),
                None => decl.split_once(' ').expect("a type and names"),
            };
            let kind = match (pointer, ty.trim()) {
                (true, _) => "ptr",
                (false, "int") => "i32",
                (false, "float") => "f32",
                (false, other) => panic!("GemvArgs field type {other} has no Rust mirror rule"),
            };
            for name in names.split(',') {
                // `in` is a Rust keyword: the mirror calls it `input`.
                let name = match name.trim() {
                    "in" => "input",
                    n => n,
                };
                fields.push((name.to_string(), kind));
            }
        }
        fields
    }

    fn rust_fields() -> Vec<(String, &'static str)> {
        let start = RUST.find("pub(super) struct GemvArgs {").expect("GemvArgs in projection.rs");
        let body = &RUST[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
        body.lines()
            .filter_map(|l| l.trim().strip_prefix("pub(super) "))
            .map(|f| {
                let (name, ty) = f.trim_end_matches(',').split_once(": ").expect("name: type");
                let kind = match ty {
                    "u64" => "ptr",
                    "i32" => "i32",
                    "f32" => "f32",
                    other => panic!("GemvArgs mirror field type {other} has no C rule"),
                };
                (name.to_string(), kind)
            })
            .collect()
    }

    #[test]
    fn the_rust_gemv_args_mirror_the_c_struct_field_for_field() {
        let (cuda, rust) = (cuda_fields(), rust_fields());
        assert!(cuda.len() > 30, "parsed too few C fields: {cuda:?}");
        assert_eq!(cuda, rust);
        // Pointers first, then 4-byte fields: no padding on either side (repr(C) and nvcc agree).
        let first_scalar = rust.iter().position(|(_, k)| *k != "ptr").unwrap();
        assert!(rust[first_scalar..].iter().all(|(_, k)| *k != "ptr"), "a pointer after a 4-byte field would be padded");
    }
}
