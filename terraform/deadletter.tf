# The dead-letter topic and the subscription that keeps its messages. Two kinds of message go
# there: requests the function rejects for good, whatever their source (the function publishes
# them itself: TRIGGERS_DEAD_LETTER_TOPIC, docs/deadletters.md), and messages a push
# subscription gave up on after max_delivery_attempts (Pub/Sub forwards them). So the topic
# exists whenever dead letters are enabled, also for rules with only Cloud Storage, Eventarc or
# Scheduler sources. Rights: the function's account publishes to this topic only; the Pub/Sub
# service agent publishes to it and subscribes to each push subscription, when there are some.

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  dead_letter  = var.dead_letter.enabled
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption by default; a customer-managed key is used when var.kms_key_name is set (CSEK does not exist for Pub/Sub).
  count = local.dead_letter ? 1 : 0

  project                    = var.project_id
  name                       = "${var.name}-dead-letter"
  labels                     = var.labels
  message_retention_duration = var.dead_letter.message_retention_duration
  kms_key_name               = var.kms_key_name

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "dead_letter" {
  # Messages published to a topic without subscriptions are lost: keep them for inspection.
  count = local.dead_letter ? 1 : 0

  project                    = var.project_id
  name                       = "${var.name}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter[0].id
  labels                     = var.labels
  message_retention_duration = var.dead_letter.message_retention_duration
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}

# The function publishes the requests it rejects (triggers/function/deadletter.py), to this topic only.
resource "google_pubsub_topic_iam_member" "function_publisher" {
  count = local.dead_letter ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[0].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.function.member
}

# Pub/Sub forwards what a push subscription could not deliver.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  count = local.dead_letter && length(local.push_topics) + length(local.named_subscriptions) > 0 ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[0].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.dead_letter ? local.push_topics : toset([])

  project      = var.project_id
  subscription = google_pubsub_subscription.push[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "named_dead_letter_subscriber" {
  for_each = local.dead_letter ? local.named_subscriptions : {}

  project      = google_pubsub_subscription.named[each.key].project
  subscription = google_pubsub_subscription.named[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
