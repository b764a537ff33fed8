#!/usr/bin/env bash
# `prior bench` and every bench on a lent GPU machine, against PyTorch CUDA in
# the same run.
#
#   benches/device.sh prepare   here: build the bench binaries (release), strip
#                               and gzip them into .device/bin/, copy the data
#                               they read from ../shared into .device/shared/,
#                               and download the Vulkan loader .debs into .gl/
#                               (the GPU machine reaches no registry). Both
#                               folders are listed in .git/info/exclude.
#   benches/device.sh run       there (the device tool's `run`, with
#                               carry [".device", ".gl"]): unpack the loader,
#                               run `prior bench`, Set12 denoising with
#                               --precision f32 and f16, and every bench with PRIOR_TORCH_DEVICE=cuda
#                               and write everything to $OUT/benches.txt
#                               (the card named at the top).
#
# Per-bench time limit: PRIOR_BENCH_TIMEOUT seconds (default 100). The whole
# run is sized to end within ~9 minutes on an H100 so that one retry fits in
# the 15 device-minutes a session gets.
set -uo pipefail
cd "$(dirname "$0")/.."

BENCHES="conv conv_transpose bfcnn quality energy jacobian sampler sampler_demo olm"

prepare() {
    set -e
    grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo /.device/ >>.git/info/exclude
    grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
    rm -rf .device && mkdir -p .device/bin .device/shared
    git describe --always --dirty >.device/commit
    cargo bench --locked --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys, shutil
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        shutil.copy(m["executable"], ".device/bin/" + m["target"]["name"])
'
    # the CLI too: `prior devices` heads the report (which adapters wgpu sees there)
    cargo build --locked --release -p prior-cli
    cp "${CARGO_TARGET_DIR:-target}/release/prior" .device/bin/prior
    for b in $BENCHES prior; do
        test -x ".device/bin/$b" || { echo "bench binary $b was not built"; exit 1; }
        strip ".device/bin/$b"
        gzip -9 ".device/bin/$b"
    done
    local S=../shared
    for f in checkpoints/universal_inverse_problem/BSD400_gray/model.pt \
             checkpoints/universal_inverse_problem/mnist_gray/model.pt \
             checkpoints/universal_inverse_problem/BSD300_color/model.pt \
             checkpoints/dual_score_matching/mnist32_gray_tiny/model.pth.tar \
             checkpoints/bias_free_denoising/dncnn/bias_free/0-100.pt \
             checkpoints/bias_free_denoising/rcnn/bias_free/0-100.pt \
             checkpoints/bias_free_denoising/unet/bias_free/0-100.pt \
             images/color/Set14/flowers.png images/mnist/t10k-images-idx3-ubyte.gz; do
        mkdir -p ".device/shared/$(dirname "$f")"
        cp "$S/$f" ".device/shared/$f"
    done
    mkdir -p .device/shared/images/gray && cp -r "$S/images/gray/Set12" .device/shared/images/gray/
    mkdir -p .device/shared/checkpoints/local_probability_models
    cp -r "$S/checkpoints/local_probability_models/multi_scale_160_rf9" .device/shared/checkpoints/local_probability_models/
    if ! ls .gl/*.deb >/dev/null 2>&1; then
        mkdir -p .gl /tmp/amd64/partial
        local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
        apt-get $o update -qq
        (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    fi
    du -sh .device .gl
}

run() {
    local out="${OUT:-/tmp/prior-bench-out}"
    mkdir -p "$out"
    if ! ldconfig -p | grep -q libvulkan.so.1; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
        export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
        export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    fi
    export PRIOR_REPO="$PWD" PRIOR_SHARED="$PWD/.device/shared" PRIOR_TORCH_DEVICE="${PRIOR_TORCH_DEVICE:-cuda}" PRIOR_BACKEND=vulkan
    export PYTHONUNBUFFERED=1
    local limit="${PRIOR_BENCH_TIMEOUT:-100}"
    mkdir -p /tmp/prior-bin
    for b in $BENCHES prior; do gunzip -c ".device/bin/$b.gz" >"/tmp/prior-bin/$b" && chmod +x "/tmp/prior-bin/$b"; done
    {
        echo "# prior benches on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'unknown GPU')"
        echo "# $(date -u +%FT%TZ), commit $(cat .device/commit 2>/dev/null || echo '?'), PyTorch $(python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "without CUDA")' 2>&1)"
        echo
        echo "== prior devices"
        /tmp/prior-bin/prior devices 2>&1 | grep -v XDG_RUNTIME_DIR
        echo
        echo "== prior bench (FMA ceiling, conv variants, every architecture at 256x256)"
        timeout "$limit" /tmp/prior-bin/prior bench --size 256 --checkpoints .device/shared/checkpoints 2>&1 | grep -v XDG_RUNTIME_DIR
        timeout "$limit" /tmp/prior-bin/prior bench --size 256 --json --checkpoints .device/shared/checkpoints >"$out/prior_bench.json" 2>/dev/null
        echo
        echo "== --precision f32 vs f16: prior denoise of Set12 at sigma 25 (BF-CNN, small UNet; PSNR and seconds per image)"
        for m in universal_inverse_problem/BSD400_gray/model.pt bias_free_denoising/unet/bias_free/0-100.pt; do
            for p in f32 f16; do
                echo "-- $m --precision $p"
                timeout "$limit" /tmp/prior-bin/prior denoise -m ".device/shared/checkpoints/$m" -i .device/shared/images/gray/Set12 \
                    -o "/tmp/prior-precision-$p-$(basename "$(dirname "$m")")" --add-noise 25 --json --precision "$p" 2>&1 | grep -v XDG_RUNTIME_DIR
            done
        done
        for b in $BENCHES; do
            echo
            echo "== $b"
            # the benches take --bench like cargo's harness-less runs
            timeout "$limit" "/tmp/prior-bin/$b" --bench 2>&1 | grep -v XDG_RUNTIME_DIR
            echo "(exit ${PIPESTATUS[0]})"
        done
    } 2>&1 | tee "$out/benches.txt"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: benches/device.sh prepare|run" >&2; exit 2 ;;
esac
