from common.runtime import main
from psp_sandbox.app import create_app
from psp_sandbox.settings import Settings

if __name__ == "__main__":
    main(Settings, create_app)
