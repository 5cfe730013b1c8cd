"""STUB task function."""
def run_task(cfg):
    from omegaconf import OmegaConf
    print(OmegaConf.to_yaml(cfg))
