"""Print a new Standard Webhooks secret for I2V_WEBHOOK_SECRET (give the same one to receivers)."""

import base64
import os

if __name__ == "__main__":
    print("whsec_" + base64.b64encode(os.urandom(32)).decode())
