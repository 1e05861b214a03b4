from checkout.app import create_app
from checkout.settings import Settings
from common.runtime import main

if __name__ == "__main__":
    main(Settings, create_app)
