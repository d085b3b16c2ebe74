"""The TimeGlass version: one number for the binary, the library and this package.

python/meson.build refuses to configure when it differs from the meson
project version, so the two cannot drift apart.
"""

__version__ = "0.1.0"
