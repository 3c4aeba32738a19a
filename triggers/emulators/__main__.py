"""``python -m triggers.emulators --jobs config/jobs.yaml --port 8123``"""

import sys

from .server import main

sys.exit(main())
