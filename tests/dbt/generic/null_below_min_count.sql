{#-
  Small-group suppression: fails with every row where `column_name` is shown (not null) although
  `count_column` is below `min_count` (default: the cohort_min_learners var).
-#}
{% test null_below_min_count(model, column_name, count_column, min_count=none) %}

{%- set threshold = min_count if min_count is not none else var('cohort_min_learners') %}

select *
from {{ model }}
where
    {{ column_name }} is not null
    and ({{ count_column }} is null or {{ count_column }} < {{ threshold }})

{% endtest %}
