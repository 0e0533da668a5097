//! Tests of gemv_choice.rs (a child module through #[path], so that the choices' file keeps to
//! the choices): the settings each variable takes, their defaults, and the shapes they give.

use super::*;

fn stream() -> GemvChoice {
    GemvChoice {
        stream: true,
        stage_bytes: STAGE_BYTES,
        mlp_stage_bytes: MLP_STAGE_BYTES,
        ring_bytes: RING_BYTES,
        blocks_per_sm: 1,
        sms: 132,
        mlp: MlpChoice::Transposed,
        mlp_down_early: false,
        mlp_down_staged: false,
        attention_loads_early: true,
        combine: CombineChoice::Early,
        ahead: false,
        replay_direct: false,
        carveout: CarveoutChoice::Auto,
    }
}

#[test]
fn stage_rows_and_ring_depth_follow_the_row_size() {
    // TinyLlama bf16: 2,048 inputs (4 KiB rows) and 5,632 (11 KiB rows); SmolLM2's 576.
    assert_eq!(
        stream().stream(4096, 0),
        Some(StreamShape {
            stage_rows: 4,
            stages: 6,
            shared_bytes: 6 * 4 * 4096 + 4096
        })
    );
    assert_eq!(
        stream().stream(11264, 0).map(|s| (s.stage_rows, s.stages)),
        Some((2, 4))
    );
    assert_eq!(
        stream().stream(1152, 0).map(|s| (s.stage_rows, s.stages)),
        Some((8, 10))
    );
}

#[test]
fn the_warp_gemv_by_default_and_where_the_ring_does_not_fit() {
    assert_eq!(
        GemvChoice {
            stream: false,
            ..stream()
        }
        .stream(4096, 0),
        None
    );
    assert_eq!(stream().stream(60 * 1024, 0), None);
    // The ring that fooled v8's first sweep: 192 KiB beside the O projection's 40 KiB.
    assert_eq!(
        GemvChoice {
            ring_bytes: 192 * 1024,
            ..stream()
        }
        .stream(4096, 40 * 1024),
        None
    );
    assert!(GemvChoice {
        ring_bytes: 192 * 1024,
        ..stream()
    }
    .stream(4096, 0)
    .is_some());
}

#[test]
fn blocks_cover_the_pairs_once() {
    assert_eq!(stream().blocks(5632, 4), 132);
    assert_eq!(
        GemvChoice {
            blocks_per_sm: 2,
            ..stream()
        }
        .blocks(5632, 4),
        264
    );
    assert_eq!(stream().blocks(100, 8), 25);
    assert_eq!(stream().blocks(0, 2), 1);
}

/// A variable lookup over `pairs` (name, value), in place of the environment.
fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let owned: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    move |name| owned.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

#[test]
fn env_choice_takes_the_first_option_by_default_and_names_all_on_error() {
    let options = [("fused", 0), ("split", 1)];
    assert_eq!(env_choice(&vars(&[]), "CHOICE", &options).unwrap(), 0);
    assert_eq!(env_choice(&vars(&[("CHOICE", "")]), "CHOICE", &options).unwrap(), 0);
    assert_eq!(env_choice(&vars(&[("CHOICE", "split")]), "CHOICE", &options).unwrap(), 1);
    let err = env_choice(&vars(&[("CHOICE", "fast")]), "CHOICE", &options).unwrap_err().to_string();
    assert!(err.contains("CHOICE=fast: expected one of fused, split (fused is the default)"), "{err}");
}

#[test]
fn the_transposed_mlp_is_the_default_and_removed_settings_are_refused() {
    assert_eq!(GemvChoice::from_vars(132, &vars(&[])).unwrap().mlp, MlpChoice::Transposed);
    assert_eq!(GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_MLP", "fused")])).unwrap().mlp, MlpChoice::Fused);
    assert!(GemvChoice::from_vars(132, &vars(&[])).unwrap().attention_loads_early);
    assert!(!GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_ATTN_LOADS", "after-wait")])).unwrap().attention_loads_early);
    assert!(GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_ATTN_LOADS", "late")])).is_err());
    let default = GemvChoice::from_vars(132, &vars(&[])).unwrap();
    assert!(default.mlp_down_staged && !default.mlp_down_early);
    let down = |v: &str| GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_MLP_DOWN", v)])).unwrap();
    assert!(down("early").mlp_down_early && !down("early").mlp_down_staged);
    assert!(!down("after-sync").mlp_down_early && !down("after-sync").mlp_down_staged);
    let combine = |v: &str| GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_COMBINE", v)])).unwrap().combine;
    assert_eq!(GemvChoice::from_vars(132, &vars(&[])).unwrap().combine, CombineChoice::Staged);
    assert_eq!(combine("after-wait"), CombineChoice::AfterWait);
    assert_eq!(combine("early"), CombineChoice::Early);
    assert!(GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_COMBINE", "sooner")])).is_err());
    assert!(GemvChoice::from_vars(132, &vars(&[])).unwrap().ahead);
    assert!(!GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_AHEAD", "off")])).unwrap().ahead);
    assert!(GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_AHEAD", "yes")])).is_err());
    assert!(GemvChoice::from_vars(132, &vars(&[])).unwrap().replay_direct);
    assert!(!GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_REPLAY", "joined")])).unwrap().replay_direct);
    let carveout = |v: &str| GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_CARVEOUT", v)])).unwrap().carveout;
    assert_eq!(GemvChoice::from_vars(132, &vars(&[])).unwrap().carveout, CarveoutChoice::Auto);
    assert!(carveout("auto").max_shared(true) && !carveout("auto").max_shared(false));
    assert!(carveout("max-shared").max_shared(false) && carveout("max-shared").max_shared(true));
    assert!(!carveout("driver").max_shared(true));
    assert!(GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_CARVEOUT", "most")])).is_err());
    for removed in ["LLMBENCH_CUDA_QKV", "LLMBENCH_CUDA_O", "LLMBENCH_CUDA_LAYER"] {
        let err = GemvChoice::from_vars(132, &vars(&[(removed, "x")])).unwrap_err().to_string();
        assert!(err.contains(removed) && err.contains("removed"), "{err}");
    }
    // Set but empty is unset, as for every setting.
    assert!(GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_LAYER", "")])).is_ok());
}

#[test]
fn fused_mlp_blocks_fill_one_wave_of_whole_sectors() {
    // TinyLlama: 5,632 intermediate values, 704 groups of 8: 264 blocks, 16 or 24 a block.
    assert_eq!(stream().mlp_blocks(704, 2, 2), Some(264));
    assert_eq!(stream().mlp_blocks(704, 1, 2), Some(132));
    assert_eq!(stream().mlp_blocks(704, 0, 2), Some(132));
    // SmolLM2: 1,536 values, 192 groups: a block each, 16 bytes of a bf16 row; 32 in f32.
    assert_eq!(stream().mlp_blocks(192, 2, 2), None);
    assert_eq!(stream().mlp_blocks(192, 2, 4), Some(192));
    assert_eq!(GemvChoice { mlp: MlpChoice::Split, ..stream() }.mlp_blocks(704, 2, 2), None);
    // Over the stored matrix: the same rule (SmolLM2 bf16 two launches either way).
    let stored = GemvChoice { mlp: MlpChoice::Fused, ..stream() };
    assert_eq!(stored.mlp_blocks(192, 2, 2), None);
    assert_eq!(stored.mlp_blocks(704, 2, 2), Some(264));
}

#[test]
fn staged_down_rows_take_the_widest_slice_up_to_the_cap() {
    let staged = GemvChoice { mlp_down_staged: true, ..stream() };
    // TinyLlama bf16: 24 rows of 4 KiB, all of them; a 7B's 48 of 8 KiB: 12.
    assert_eq!(staged.mlp_stage_rows(24, 4096), 24);
    assert_eq!(staged.mlp_stage_rows(48, 8192), 12);
    assert_eq!(stream().mlp_stage_rows(24, 4096), 0);
    assert_eq!(GemvChoice { mlp: MlpChoice::Fused, ..staged }.mlp_stage_rows(24, 4096), 0);
    // LLMBENCH_CUDA_MLP_STAGE_BYTES: 48 KiB stages 12 of TinyLlama's rows; 0 none.
    let bytes = |v: &str| GemvChoice::from_vars(132, &vars(&[("LLMBENCH_CUDA_MLP_STAGE_BYTES", v)]));
    assert_eq!(bytes("49152").unwrap().mlp_stage_rows(24, 4096), 12);
    assert_eq!(bytes("0").unwrap().mlp_stage_rows(24, 4096), 0);
    assert_eq!(GemvChoice::from_vars(132, &vars(&[])).unwrap().mlp_stage_rows(24, 4096), 24);
    assert_eq!(bytes("").unwrap().mlp_stage_rows(24, 4096), 24);
    let err = bytes("200000").unwrap_err().to_string();
    assert!(err.contains("LLMBENCH_CUDA_MLP_STAGE_BYTES=200000"), "{err}");
}
