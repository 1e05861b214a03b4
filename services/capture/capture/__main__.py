from capture.app import create_app
from capture.settings import Settings
from common.runtime import main

if __name__ == "__main__":
    main(Settings, create_app)
