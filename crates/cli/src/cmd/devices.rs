//! `prior devices`: list the GPU adapters wgpu can see.

use clap::Args;
use prior_gpu::{AdapterSummary, Gpu, GpuError, GpuOptions};

/// Arguments of `prior devices` (none besides the environment:
/// `PRIOR_BACKEND` restricts the backends searched).
#[derive(Args, Debug, Clone, Default)]
pub struct DevicesArgs {
    /// Print one JSON object per adapter instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Lists every adapter (name, backend, type, driver, storage-buffer limit,
/// subgroups, f16). With no adapter, fails with [`GpuError::NoAdapter`]'s
/// message, which says how to install a software Vulkan driver.
pub fn run(args: DevicesArgs) -> Result<(), String> {
    let options = GpuOptions::from_env();
    let adapters = pollster::block_on(Gpu::enumerate(&options));
    if adapters.is_empty() {
        let filter = match options.backends {
            Some(b) => format!(" on backends {b:?} (PRIOR_BACKEND)"),
            None => String::new(),
        };
        return Err(GpuError::NoAdapter { filter }.to_string());
    }
    if args.json {
        for a in &adapters {
            println!("{}", to_json(a));
        }
        return Ok(());
    }
    println!("{} adapter(s):", adapters.len());
    for (i, a) in adapters.iter().enumerate() {
        println!("[{i}] {}", a.name);
        println!("    backend:            {}", a.backend);
        println!("    type:               {}", a.device_type);
        println!(
            "    driver:             {}",
            if a.driver.is_empty() { "-" } else { &a.driver }
        );
        println!(
            "    max storage buffer: {} ({} bytes)",
            human_bytes(a.max_storage_buffer_binding_size),
            a.max_storage_buffer_binding_size
        );
        println!("    max buffer:         {}", human_bytes(a.max_buffer_size));
        println!("    subgroups:          {}", yes_no(a.subgroups));
        println!("    f16:                {}", yes_no(a.f16));
    }
    if options.adapter_name.is_some() {
        println!("(PRIOR_ADAPTER selects among these by name; `prior devices` lists them all.)");
    }
    Ok(())
}

fn to_json(a: &AdapterSummary) -> serde_json::Value {
    serde_json::json!({
        "name": a.name,
        "backend": a.backend,
        "type": a.device_type,
        "driver": a.driver,
        "max_storage_buffer_binding_size": a.max_storage_buffer_binding_size,
        "max_buffer_size": a.max_buffer_size,
        "subgroups": a.subgroups,
        "f16": a.f16,
    })
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `134217728` → `128 MiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
