# Event delivery to the function's HTTP entry point (handle_http accepts Eventarc's binary-mode
# CloudEvents and raw Pub/Sub push alike). One delivery per event source, keyed by that source
# (bucket/type, topic), shared by every rule that watches it: the function routes each event to
# all matching rules itself, so one trigger per rule would only deliver duplicates.

locals {
  # Eventarc trigger ids: lowercase, at most 63 characters; bucket names may hold '.' or '_'.
  storage_trigger_ids = {
    for key, s in local.storage_sources :
    key => "${var.name}-gcs-${substr(sha1(key), 0, 12)}"
  }
  topic_ids = {
    for topic in local.pubsub_topics :
    topic => "${var.name}-${substr(replace(element(split("/", topic), 3), "/[^a-z0-9-]/", "-"), 0, 30)}-${substr(sha1(topic), 0, 8)}"
  }
  eventarc_topics = var.pubsub_delivery == "eventarc" ? local.pubsub_topics : toset([])
  push_topics     = var.pubsub_delivery == "push" ? local.pubsub_topics : toset([])

  # Eventarc's destination.cloud_run_service.service takes the service's short name; the
  # function's service_config[0].service is its full name (projects/P/locations/L/services/S).
  function_service_name = regex("[^/]+$", google_cloudfunctions2_function.this.service_config[0].service)

  # A raw push body names its subscription, never its topic. The push endpoint carries the
  # topic in its query string (?topic=projects/P/topics/T), which the function reads as the
  # message's data.topic, so rules scoped by `topic:` match pushed messages as they match
  # Eventarc's (docs/events.md). Nothing else has to agree with the subscriptions: any push
  # subscription made this way (here, by hand, in another module) delivers its topic.
  push_endpoints = {
    for topic in setunion(local.push_topics, flatten(values(local.named_subscriptions))) :
    topic => "${google_cloudfunctions2_function.this.url}?topic=${urlencode(topic)}"
  }
  push_audience = var.function.verify_oidc ? local.function_url : google_cloudfunctions2_function.this.url
}

resource "google_eventarc_trigger" "storage" {
  for_each = local.storage_sources

  project         = var.project_id
  location        = lookup(var.bucket_locations, each.value.bucket, var.region)
  name            = local.storage_trigger_ids[each.key]
  service_account = google_service_account.trigger.email
  labels          = var.labels

  matching_criteria {
    attribute = "type"
    value     = each.value.type
  }
  matching_criteria {
    attribute = "bucket"
    value     = each.value.bucket
  }

  destination {
    cloud_run_service {
      service = local.function_service_name
      region  = var.region
    }
  }

  # The Cloud Storage service agent's publisher grant must have propagated before Eventarc
  # checks it when it creates the trigger's topic (time_sleep.storage_agent_grants, iam.tf).
  depends_on = [time_sleep.storage_agent_grants]
}

resource "google_eventarc_trigger" "pubsub" {
  for_each = local.eventarc_topics

  project         = var.project_id
  location        = var.region
  name            = local.topic_ids[each.key]
  service_account = google_service_account.trigger.email
  labels          = var.labels

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.pubsub.topic.v1.messagePublished"
  }

  transport {
    pubsub {
      topic = each.key
    }
  }

  destination {
    cloud_run_service {
      service = local.function_service_name
      region  = var.region
    }
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = local.push_topics

  project = var.project_id
  name    = local.topic_ids[each.key]
  topic   = each.key
  labels  = var.labels

  # The ack deadline is also the push timeout: at least the function's timeout.
  ack_deadline_seconds       = min(600, var.function.timeout_seconds + 30)
  message_retention_duration = var.dead_letter.message_retention_duration

  push_config {
    push_endpoint = local.push_endpoints[each.key]

    oidc_token {
      service_account_email = google_service_account.trigger.email
      audience              = local.push_audience
    }
  }

  retry_policy {
    minimum_backoff = var.dead_letter.minimum_backoff
    maximum_backoff = var.dead_letter.maximum_backoff
  }

  dynamic "dead_letter_policy" {
    for_each = local.dead_letter ? [1] : []
    content {
      dead_letter_topic     = google_pubsub_topic.dead_letter[0].id
      max_delivery_attempts = var.dead_letter.max_delivery_attempts
    }
  }

  expiration_policy {
    ttl = ""
  }
}

# The subscriptions rules name with `subscription:` (and `topic:`), created under that very
# name so that the rule matches what they deliver; otherwise as the per-topic ones above.
resource "google_pubsub_subscription" "named" {
  for_each = local.named_subscriptions

  project = regex(local.full_subscription_re, each.key)[0]
  name    = regex(local.full_subscription_re, each.key)[1]
  topic   = each.value[0]
  labels  = var.labels

  ack_deadline_seconds       = min(600, var.function.timeout_seconds + 30)
  message_retention_duration = var.dead_letter.message_retention_duration

  push_config {
    push_endpoint = local.push_endpoints[each.value[0]]

    oidc_token {
      service_account_email = google_service_account.trigger.email
      audience              = local.push_audience
    }
  }

  retry_policy {
    minimum_backoff = var.dead_letter.minimum_backoff
    maximum_backoff = var.dead_letter.maximum_backoff
  }

  dynamic "dead_letter_policy" {
    for_each = local.dead_letter ? [1] : []
    content {
      dead_letter_topic     = google_pubsub_topic.dead_letter[0].id
      max_delivery_attempts = var.dead_letter.max_delivery_attempts
    }
  }

  expiration_policy {
    ttl = ""
  }

  lifecycle {
    precondition {
      condition     = length(distinct(each.value)) == 1
      error_message = "Rules name the subscription ${each.key} on different topics (${join(", ", distinct(each.value))}): a subscription has one topic."
    }
    precondition {
      # The push identity and the dead-letter grants are those of project_id's Pub/Sub agent.
      condition     = regex(local.full_subscription_re, each.key)[0] == var.project_id
      error_message = "The subscription ${each.key} is not in project_id (${var.project_id}): the module creates the subscriptions rules name in project_id only."
    }
  }
}
