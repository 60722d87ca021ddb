# The embedded demo: synthetic videos and tiny seeded backbone weights (no network).
# SVD + OpenCLIP always; the tiny VideoMAE / V-JEPA 2 only when a feature set uses them.


rule make_demo_data:
    output:
        labels=f"{config['demo_dir']}/labels.csv",
    log:
        "logs/make_demo_data/demo.log",
    conda:
        "../../envs/actiondiff.yaml"
    params:
        settings=json.dumps({"demo": config.get("demo", {})}),
        out=get_demo_dir,
    shell:
        "actiondiff make-demo-data --out {params.out} --settings {params.settings:q} > {log} 2>&1"


rule make_tiny_weights:
    output:
        unet=f"{config['weights_dir']}/tiny-svd/unet/config.json",
        vae=f"{config['weights_dir']}/tiny-svd/vae/config.json",
        clip_arch=f"{config['weights_dir']}/tiny-clip/open_clip_config.json",
        clip_checkpoint=f"{config['weights_dir']}/tiny-clip/open_clip_model.safetensors",
    log:
        "logs/make_tiny_weights/weights.log",
    conda:
        "../../envs/extract.yaml"
    params:
        out=get_weights_dir,
    shell:
        "actiondiff make-tiny-weights --out {params.out} > {log} 2>&1"


rule make_tiny_encoder_weights:
    output:
        config=f"{config['weights_dir']}/tiny-{{encoder}}/config.json",
        weights=f"{config['weights_dir']}/tiny-{{encoder}}/model.safetensors",
    log:
        "logs/make_tiny_encoder_weights/{encoder}.log",
    wildcard_constraints:
        encoder="videomae|vjepa2",
    conda:
        "../../envs/extract.yaml"
    params:
        out=get_weights_dir,
    shell:
        "actiondiff make-tiny-weights --out {params.out} --backbone {wildcards.encoder} > {log} 2>&1"
