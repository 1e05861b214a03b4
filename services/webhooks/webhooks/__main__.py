from common.runtime import main
from webhooks.app import create_app
from webhooks.settings import Settings

if __name__ == "__main__":
    main(Settings, create_app)
