"""``python -m tf_precrop.cli``: the ``tf-precrop`` command."""

import sys

from tf_precrop.cli import main

sys.exit(main())
