"""Development kit shared by the tests, the benchmarks and tools/gen_demo.py (not shipped).

- `kubevirt.py` builds realistic KubeVirt objects (node labels through cpumodel.core.labels);
- `fakekube.py` is the fake kube-apiserver (real HTTP on 127.0.0.1).
"""
