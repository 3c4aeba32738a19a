# The Firestore ledger (docs/ledger.md): the database (optional), the TTL policy on expire_at,
# single-field index exemptions for the monotonically increasing / large fields, and the
# composite indexes `list` needs (the reconciler lists by status).

locals {
  ledger_exempt_fields = toset(["updated_at", "lease_until", "token", "request", "event", "event_document"])

  # Equality filters of Ledger.list before its order_by(created_at DESC) (docs/ledger.md,
  # "Composite indexes for list"). "status" is the reconciler's query (status in [launched]).
  ledger_composite_indexes = {
    "status"      = ["status"]
    "rule"        = ["rule"]
    "rule-status" = ["rule", "status"]
  }

  # Batches (a rule's `batch:`) live beside the ledger, in a collection of their own
  # (triggers/ledger/firestore_batches.py names it the same way). `triggers runs --batches`
  # lists them by kind (and rule), newest opened first.
  batch_collection = (
    var.firestore.collection == "triggers-runs" ? "triggers-batches" : "${var.firestore.collection}-batches"
  )
  batching = anytrue([for r in values(local.rules) : r.batched])
  batch_composite_indexes = {
    "kind"      = ["kind"]
    "kind-rule" = ["kind", "rule"]
  }
}

resource "google_firestore_database" "ledger" {
  count = var.firestore.create ? 1 : 0

  project                           = local.firestore_project
  name                              = var.firestore.database
  location_id                       = var.firestore.location_id
  type                              = "FIRESTORE_NATIVE"
  delete_protection_state           = var.firestore.delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  point_in_time_recovery_enablement = var.firestore.point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.apis]
}

resource "google_firestore_field" "expire_at" {
  count = var.firestore.ttl ? 1 : 0

  project    = local.firestore_project
  database   = var.firestore.create ? google_firestore_database.ledger[0].name : var.firestore.database
  collection = var.firestore.collection
  field      = "expire_at"

  # TTL policy: records are deleted (typically within 24 h) once expire_at has passed.
  ttl_config {}

  # An empty index_config removes the field's single-field indexes (monotonic: a hotspot).
  dynamic "index_config" {
    for_each = var.firestore.exempt_indexes ? [1] : []
    content {}
  }

  # With firestore.create = false nothing else orders this after the Firestore API.
  depends_on = [google_project_service.apis]
}

resource "google_firestore_field" "exempt" {
  for_each = var.firestore.exempt_indexes ? local.ledger_exempt_fields : toset([])

  project    = local.firestore_project
  database   = var.firestore.create ? google_firestore_database.ledger[0].name : var.firestore.database
  collection = var.firestore.collection
  field      = each.value

  index_config {}

  # Firestore applies one field configuration change at a time per database; and the API
  # must be enabled first (firestore.ttl = false leaves nothing in between).
  depends_on = [google_project_service.apis, google_firestore_field.expire_at]
}

resource "google_firestore_index" "ledger" {
  # Without the "status" index the reconciler's query fails (FAILED_PRECONDITION) on every call.
  for_each = var.firestore.composite_indexes ? local.ledger_composite_indexes : {}

  project     = local.firestore_project
  database    = var.firestore.create ? google_firestore_database.ledger[0].name : var.firestore.database
  collection  = var.firestore.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value
    content {
      field_path = fields.value
      order      = "ASCENDING"
    }
  }

  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }

  # One index or field configuration change at a time is the safe order for a database.
  depends_on = [google_project_service.apis, google_firestore_field.exempt]
}

# Batch documents expire with their members' records (expire_at), like the ledger's.
resource "google_firestore_field" "batch_expire_at" {
  count = var.firestore.ttl && local.batching ? 1 : 0

  project    = local.firestore_project
  database   = var.firestore.create ? google_firestore_database.ledger[0].name : var.firestore.database
  collection = local.batch_collection
  field      = "expire_at"

  ttl_config {}

  dynamic "index_config" {
    for_each = var.firestore.exempt_indexes ? [1] : []
    content {}
  }

  depends_on = [google_project_service.apis, google_firestore_field.exempt]
}

resource "google_firestore_index" "batches" {
  # Without them `triggers runs --batches` fails (FAILED_PRECONDITION) on Firestore.
  for_each = var.firestore.composite_indexes && local.batching ? local.batch_composite_indexes : {}

  project     = local.firestore_project
  database    = var.firestore.create ? google_firestore_database.ledger[0].name : var.firestore.database
  collection  = local.batch_collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value
    content {
      field_path = fields.value
      order      = "ASCENDING"
    }
  }

  fields {
    field_path = "opened_at"
    order      = "DESCENDING"
  }

  depends_on = [google_project_service.apis, google_firestore_index.ledger, google_firestore_field.batch_expire_at]
}
