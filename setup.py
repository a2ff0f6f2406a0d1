from setuptools import find_packages, setup

setup(
    name="tf_precrop",
    version="0.1.0",
    description=(
        "Structured pruning at initialization (PreCropping) for Keras and "
        "tf_keras CNNs: channel graph, saliency, width solver, rebuild, "
        "TFLite/LiteRT export."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tf_precrop", "tf_precrop.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.3",
        "numpy",
        "scipy>=1.10",
        "ai-edge-litert",
        "matplotlib",
    ],
    extras_require={
        "tfmot": [
            "tf-keras>=2.16,<2.22",
            "tensorflow-model-optimization>=0.8.0",
        ],
        "test": [
            "tf-keras>=2.16,<2.22",
            "tensorflow-model-optimization>=0.8.0",
            "pytest>=7",
            "pytest-xdist",
            "hypothesis>=6",
            "nbclient>=0.7",
            "nbformat",
            "ipykernel",
        ],
    },
    entry_points={"console_scripts": ["tf-precrop=tf_precrop.cli:main"]},
    # The bundled 500-image CIFAR-10 sample (load_cifar10(source="sample")) and
    # its provenance; MANIFEST.in lists the same files for the sdist.
    package_data={"tf_precrop.datasets": ["cifar10_sample.npz", "README.md"]},
    include_package_data=True,
)
