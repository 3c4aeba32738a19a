provider "google" {
  project = var.project_id
  region  = var.region
}

module "triggers" {
  source = "../.."

  project_id = var.project_id
  region     = var.region
  name       = "triggers-ops"

  rules_file = "${path.module}/rules.yaml"
  source_dir = "${path.module}/../../.."

  # The ledger goes into a database that already exists (created elsewhere, perhaps in another
  # project): the module only adds the TTL policy, the index exemptions and the IAM binding.
  firestore = {
    create     = false
    project    = var.firestore_project
    database   = var.firestore_database
    collection = "triggers-runs"
  }

  # Pub/Sub through Eventarc triggers instead of push subscriptions: no dead-letter policy on
  # deliveries, but the function still publishes what it rejects to the dead-letter topic.
  pubsub_delivery = "eventarc"

  # The reconciler records the outcome of launched runs every 15 minutes, office hours only.
  reconcile = {
    schedule  = "*/15 7-19 * * 1-5"
    time_zone = "Europe/Berlin"
  }

  # The function's source archive goes to an existing bucket.
  source_bucket = var.source_bucket

  labels = { app = "triggers" }
}
