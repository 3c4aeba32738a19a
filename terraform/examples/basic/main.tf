provider "google" {
  project = var.project_id
  region  = var.region
}

module "triggers" {
  source = "../.."

  project_id = var.project_id
  region     = var.region
  name       = "triggers"

  # The same file the function routes on: it is packaged with the function as rules.yaml.
  rules_file = "${path.module}/rules.yaml"
  source_dir = "${path.module}/../../.."

  firestore = {
    create      = true
    location_id = var.firestore_location
  }
}
