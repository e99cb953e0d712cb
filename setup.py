"""
Packaging for vernemq.

The drop-in C{twisted/plugins/vernemq_plugin.py} is installed beside
Twisted's own plugins (no C{__init__.py} in C{twisted/} or
C{twisted/plugins/}), so C{twistd vernemq} finds it after C{pip install .}.
"""

from setuptools import find_packages, setup

setup(
    name="vernemq",
    version="0.1.0",
    description="VerneMQ, the clustered MQTT broker, rebuilt in Python on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["vernemq_plugin.py"]},
    install_requires=[
        "Twisted[tls,conch]>=24.7",
        "zope.interface>=6",
        "configobj>=5.0.8",
        "service-identity>=24.1",
        "treq>=23.11",
        # MQTT over WebSocket (listener.ws / listener.wss): the Twisted-native
        # WebSocket server, so MQTTProtocol runs unchanged over a WebSocket.
        "autobahn>=24.4",
    ],
    extras_require={
        # hypothesis: property tests of the codec; paho-mqtt: the real
        # MQTT client the integration tests drive the node with.
        "test": ["hypothesis>=6.100", "paho-mqtt>=2.0"],
        "dev": [
            "hypothesis>=6.100", "paho-mqtt>=2.0",
            "mypy>=1.10", "mypy-zope>=1.0", "ruff>=0.5", "tox>=4",
        ],
    },
    entry_points={
        "console_scripts": [
            "vmq-epmd = vernemq.dist.epmd_cli:main",
            "vmq-admin = vernemq.admin.cli:main",
            "vmq-passwd = vernemq.auth.passwd_cli:main",
        ]
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3.11",
        "Topic :: Internet",
    ],
)
